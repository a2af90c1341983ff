import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.kernels import ciou, hungarian, pairwise_ciou, spatial_score
from rewards.spatial import RewardConfig, compute_reward, perfect_response
from rewards.template import normalize_answer, object_label, parse_response

SAMPLE = {
    "answer": "B",
    "options": ["left", "right"],
    "gt_objects": [
        {"id": "cup.1", "name": "cup", "bbox": [10, 10, 50, 60]},
        {"id": "table.1", "name": "table", "bbox": [0, 60, 200, 120]},
    ],
    "gt_relationships": [{"subject": "cup.1", "predicate": "on", "object": "table.1"}],
}


def resp(objects=None, rels=None, answer="(B)", scene=None):
    objects = SAMPLE["gt_objects"] if objects is None else objects
    rels = SAMPLE["gt_relationships"] if rels is None else rels
    scene = scene if scene is not None else json.dumps({"objects": [{"id": o["id"], "bbox": o["bbox"]} for o in objects], "relationships": rels})
    return f"<observe>a cup on a table</observe>\n<scene>{scene}</scene>\n<think>so B</think>\n<answer>{answer}</answer>"


def test_perfect_response_scores_one():
    r = compute_reward(perfect_response(SAMPLE), SAMPLE)
    assert r.format == 1 and r.accuracy == 1 and r.count == pytest.approx(1) and r.spatial == pytest.approx(1)
    assert r.total == pytest.approx(1.0)


def test_parse_template_fields():
    p = parse_response(resp())
    assert p.format_ok, p.error
    assert [o[1] for o in p.objects] == ["cup", "table"]
    assert p.relationships == [("cup.1", "on", "table.1")]
    assert p.answer == "(B)"


@pytest.mark.parametrize(
    "text,why",
    [
        ("<answer>(B)</answer>", "missing blocks"),
        (resp().replace("<think>", "<think><answer>"), "nested"),
        ("hello " + resp(), "text outside"),
        (resp(scene="{not json"), "bad json"),
        (resp(scene='{"objects": [{"id": "a", "bbox": [5, 5, 1, 1]}]}'), "inverted box"),
        (resp(scene='{"objects": [{"id": "a", "bbox": [0, 0, 1]}]}'), "short box"),
        (resp(scene='{"objects": [{"bbox": [0, 0, 1, 1]}]}'), "no id"),
        (resp(scene='{"objects": [], "relationships": [{"subject": 1}]}'), "bad relation"),
        (resp(scene="[1, 2]"), "not an object"),
        (resp(answer="  "), "empty answer"),
        (resp().replace("<observe>", "<think>x</think><observe>"), "wrong order"),
    ],
)
def test_malformed_gets_zero(text, why):
    r = compute_reward(text, SAMPLE)
    assert r.format == 0 and r.total == 0, why


def test_spatial_gated_by_accuracy():
    right = compute_reward(resp(answer="(B)"), SAMPLE)
    wrong = compute_reward(resp(answer="(A)"), SAMPLE)
    assert wrong.accuracy == 0 and wrong.spatial == pytest.approx(1)
    cfg = RewardConfig()
    assert wrong.total == pytest.approx(cfg.w_format + cfg.w_count * wrong.count)
    assert right.total - wrong.total == pytest.approx(cfg.w_accuracy + cfg.w_spatial)
    ungated = compute_reward(resp(answer="(A)"), SAMPLE, RewardConfig(gate_spatial_on_accuracy=False))
    assert ungated.total == pytest.approx(wrong.total + cfg.w_spatial)


def test_count_reward_lambdas():
    one_obj = [SAMPLE["gt_objects"][0]]
    r = compute_reward(resp(objects=one_obj, rels=[]), SAMPLE)
    # objects: 1 of 2 -> 0.5; relations: 0 of 1 -> 0
    assert r.count == pytest.approx(0.7 * 0.5 + 0.3 * 0.0)


def test_spatial_penalises_wrong_label_and_extra_objects():
    wrong_label = [{"id": "dog.1", "bbox": [10, 10, 50, 60]}, SAMPLE["gt_objects"][1]]
    r = compute_reward(resp(objects=wrong_label), SAMPLE)
    assert r.spatial == pytest.approx(0.5)
    extra = SAMPLE["gt_objects"] + [{"id": "lamp.1", "bbox": [0, 0, 5, 5]}]
    assert compute_reward(resp(objects=extra), SAMPLE).spatial == pytest.approx(2 / 3)


def test_shifted_box_lowers_spatial():
    shifted = [{"id": "cup.1", "bbox": [30, 30, 70, 80]}, SAMPLE["gt_objects"][1]]
    r = compute_reward(resp(objects=shifted), SAMPLE)
    assert 0.5 < r.spatial < 1.0


@pytest.mark.parametrize(
    "ans,expect",
    [("(B)", "B"), ("B", "B"), ("b.", "B"), ("B) right", "B"), ("right", "B"), ("Right.", "B"), ("(C)", "C"), ("maybe", "maybe")],
)
def test_normalize_answer(ans, expect):
    assert normalize_answer(ans, ["left", "right", "up"]) == expect


def test_object_label():
    assert object_label("cup.1") == "cup"
    assert object_label("Dining Table_2") == "dining table"
    assert object_label("7") == "7"


def test_ciou_properties():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert ciou(a, a) == pytest.approx(1.0)
    far = np.array([100.0, 100.0, 110.0, 110.0])
    assert ciou(a, far) < 0
    b = np.array([2.0, 3.0, 12.0, 17.0])
    assert ciou(a, b) == pytest.approx(ciou(b, a))
    assert -1 <= ciou(a, np.array([0.0, 0.0, 0.0, 0.0])) <= 1


def test_hungarian_matches_scipy():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (3, 3), (2, 5), (6, 2), (7, 7)]:
        c = rng.random((n, m))
        rows, cols = linear_sum_assignment(c)
        a = hungarian(c)
        ours = sum(c[i, a[i]] for i in range(n) if a[i] >= 0)
        assert ours == pytest.approx(c[rows, cols].sum())
        assert sum(a >= 0) == min(n, m)


def test_empty_boxes():
    z = np.zeros((0, 4))
    assert spatial_score(z, z, np.zeros((0, 0)), 1.0) == 0.0
    assert pairwise_ciou(z, np.ones((2, 4))).shape == (0, 2)


# -- property tests: the reward never raises and stays in [0, 1] ------------------------
finite = st.floats(-1e4, 1e4, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), anything, st.text(max_size=10))
json_val = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)), max_leaves=20)


def _check(text, sample=SAMPLE):
    r = compute_reward(text, sample)
    for v in r.as_dict().values():
        assert isinstance(v, float) and math.isfinite(v)
    assert 0.0 <= r.total <= 1.0 + 1e-9
    assert r.format in (0.0, 1.0) and r.accuracy in (0.0, 1.0)
    assert 0.0 <= r.spatial <= 1.0 + 1e-9 and 0.0 <= r.count <= 1.0 + 1e-9


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes(text):
    _check(text)


@settings(max_examples=200, deadline=None)
@given(json_val)
def test_arbitrary_scene_json_never_crashes(scene):
    _check(resp(scene=json.dumps(scene)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=8), st.lists(finite, min_size=4, max_size=4)), max_size=8),
    st.text(max_size=6),
)
def test_random_boxes_never_crash(objs, answer):
    scene = json.dumps({"objects": [{"id": i, "bbox": b} for i, b in objs], "relationships": []})
    _check(resp(scene=scene, answer=answer))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400), st.text(max_size=20))
def test_mutated_perfect_response_never_crashes(i, j, junk):
    text = perfect_response(SAMPLE)
    i, j = sorted((min(i, len(text)), min(j, len(text))))
    _check(text[:i] + junk + text[j:])


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"], float("nan")])
def test_non_string_response(bad):
    _check(bad)
