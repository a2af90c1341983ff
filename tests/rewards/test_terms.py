"""Count, accuracy and spatial rules, gating, weights, presets and the public API, on hand-made responses."""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import math
from dataclasses import fields

import numpy as np
import pytest

from rewards.presets import spatialthinker
from rewards.spatial import (
    RewardBreakdown,
    RewardConfig,
    compute_reward,
    is_sample_error,
    parse_ground_truth,
    perfect_response,
    score_batch,
)
from rewards.template import answer_key, normalize_answer, object_label, paper_object_name, strict_answer_correct
from tests.rewards.helpers import (
    ANSWER,
    GT,
    OBJECTS,
    PRED_OBJECTS,
    PRED_RELATIONS,
    RELATIONS,
    SIZE,
    make_gt,
    norm,
    ref_ciou01,
    respond,
)


def score(text, gt=GT, size=SIZE, **cfg):
    return compute_reward(text, gt, size, RewardConfig(**cfg))


# -- count ----------------------------------------------------------------------------------------------------------


def test_count_with_relations_in_the_ground_truth():
    r = score(respond(objects=PRED_OBJECTS[:2], relations=PRED_RELATIONS[:1]))
    obj, rel = 1 - 1 / 3, 1 - 1 / 2
    assert r.count == pytest.approx(0.7 * obj + 0.3 * rel)


def test_count_without_relations_in_the_ground_truth_ignores_relations():
    gt = make_gt(relations=[])
    r = score(respond(objects=PRED_OBJECTS[:2], relations=PRED_RELATIONS), gt=gt)
    assert r.count == pytest.approx(1 - 1 / 3)


def test_count_over_prediction_and_floor():
    many = [{"id": f"cup.{i}", "bbox": [0, 0, 5, 5]} for i in range(1, 8)]
    r = score(respond(objects=many, relations=[]))
    assert r.count == pytest.approx(0.7 * 0.0 + 0.3 * 0.0)


def test_count_zero_without_objects_key():
    r = score(respond(scene=json.dumps({"relationships": PRED_RELATIONS})))
    assert r.format == 1.0 and r.count == 0.0 and r.accuracy == 1.0
    assert r.spatial == 0.0 and r.total == pytest.approx(0.1 + 0.5)


def test_count_with_no_ground_truth_objects():
    gt = make_gt(objects=[], relations=[])
    assert score(respond(objects=[], relations=[]), gt=gt).count == 1.0
    assert score(respond(objects=PRED_OBJECTS[:1], relations=[]), gt=gt).count == 0.0


# -- accuracy -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer,acc",
    [
        ("(B) on the table", 1.0),
        ("(b) ON THE TABLE", 1.0),
        ("  (B) on the table \n", 1.0),
        ("B", 0.0),
        ("(B)", 0.0),
        ("on the table", 0.0),
        ("(B) on the table.", 0.0),
        ("(B)  on the table", 0.0),
        ("B. on the table", 0.0),
        ("The answer is (B) on the table", 0.0),
        ("(C) on the table", 0.0),
        ("", 0.0),
    ],
)
def test_accuracy_is_exact_match_of_letter_and_text(answer, acc):
    r = score(respond(answer=answer))
    assert r.accuracy == acc and r.format == 1.0


def test_answer_key():
    assert answer_key("  (B) Behind\n") == "(b) behind"


# -- spatial --------------------------------------------------------------------------------------------------------


def test_identical_boxes_give_spatial_one_up_to_eps():
    r = score(respond())
    assert r.spatial == pytest.approx(1.0, abs=1e-5)
    assert r.spatial <= 1.0


def test_names_from_ids():
    assert paper_object_name("dining_table.1") == "dining table"
    assert paper_object_name("Traffic-Light.2") == "traffic light"
    assert paper_object_name("traffic light.1") == "traffic light"
    assert paper_object_name("a.b.3") == "a"


def test_spatial_is_mean_ciou01_over_gt_with_normalised_boxes():
    moved = [{"id": "cup.1", "bbox": [20, 30, 70, 65]}, *PRED_OBJECTS[1:]]
    r = score(respond(objects=moved))
    expected = (ref_ciou01(norm(OBJECTS[0]["bbox"]), norm([20, 30, 70, 65])) + 2 * 0.5 * (1 + 1 - 1e-7)) / 3
    g = [norm(o["bbox"]) for o in OBJECTS]
    p = [norm(o["bbox"]) for o in moved]
    expected = sum(ref_ciou01(g[i], p[i]) for i in range(3)) / 3
    assert r.spatial == pytest.approx(expected, abs=1e-12)


def test_normalisation_uses_the_stated_image_size():
    moved = [{"id": "cup.1", "bbox": [20, 30, 70, 65]}, *PRED_OBJECTS[1:]]
    a = score(respond(objects=moved), size=(200, 150))
    b = score(respond(objects=moved), size=(2000, 150))  # a different aspect changes CIoU's distance terms
    assert a.spatial != pytest.approx(b.spatial, abs=1e-6)
    c = score(respond(objects=moved), size=(400, 300))  # a uniform scale does not (up to eps)
    assert a.spatial == pytest.approx(c.spatial, abs=1e-5)


def test_matching_prefers_labels_with_lambda_semantic():
    # the cup and the table swap boxes: matched by label (cost 2*(1-sim) dominates), credit is the poor overlap
    swapped = [
        {"id": "cup.1", "bbox": OBJECTS[1]["bbox"]},
        {"id": "table.1", "bbox": OBJECTS[0]["bbox"]},
        PRED_OBJECTS[2],
    ]
    by_label = score(respond(objects=swapped))
    g = [norm(o["bbox"]) for o in OBJECTS]
    expected = (2 * ref_ciou01(g[0], g[1]) + ref_ciou01(g[2], g[2])) / 3
    assert by_label.spatial == pytest.approx(expected, abs=1e-9)
    # with lambda_semantic = 0 the matching follows the boxes and every GT box is found again
    by_box = score(respond(objects=swapped), lambda_semantic=0.0)
    assert by_box.spatial == pytest.approx(1.0, abs=1e-5)


def test_credit_is_ciou_even_for_a_wrongly_named_match():
    renamed = [{"id": "dog.1", "bbox": OBJECTS[0]["bbox"]}, *PRED_OBJECTS[1:]]
    assert score(respond(objects=renamed)).spatial == pytest.approx(1.0, abs=1e-5)


def test_extra_predictions_cost_nothing_in_spatial_and_missing_ones_score_zero():
    extra = [*PRED_OBJECTS, {"id": "lamp.1", "bbox": [0, 0, 5, 5]}, {"id": "cup.2", "bbox": [11, 11, 50, 60]}]
    assert score(respond(objects=extra)).spatial == pytest.approx(1.0, abs=1e-5)
    one = score(respond(objects=PRED_OBJECTS[:1]))
    assert one.spatial == pytest.approx(1 / 3, abs=1e-5)
    none = score(respond(objects=[], relations=[]))
    assert none.spatial == 0.0 and none.format == 1.0


def test_no_ground_truth_objects_rule():
    gt = make_gt(objects=[], relations=[])
    assert score(respond(objects=[], relations=[]), gt=gt).spatial == 1.0
    assert score(respond(objects=PRED_OBJECTS[:1], relations=[]), gt=gt).spatial == 0.0


def test_far_apart_boxes_are_clipped_at_zero():
    gt = make_gt(objects=[{"id": "pole.1", "bbox": [0, 0, 1, 100]}], relations=[])
    far = [{"id": "pole.1", "bbox": [150, 149, 200, 150]}]
    raw = ref_ciou01(norm([0, 0, 1, 100]), norm([150, 149, 200, 150]))
    assert raw < 0  # the paper's CIoU01 dips below 0 here
    r = score(respond(objects=far, relations=[], answer=ANSWER), gt=gt)
    assert r.spatial == 0.0 and r.total == pytest.approx(0.1 + 0.2 + 0.5)


# -- gating and weights ---------------------------------------------------------------------------------------------


def test_spatial_gated_by_accuracy():
    right = score(respond())
    wrong = score(respond(answer="(A) under the table"))
    assert wrong.accuracy == 0.0 and wrong.spatial == 0.0
    assert wrong.total == pytest.approx(0.1 + 0.2 * wrong.count)
    ungated = score(respond(answer="(A) under the table"), gate_spatial_on_accuracy=False)
    assert ungated.spatial == pytest.approx(right.spatial)
    assert ungated.total == pytest.approx(wrong.total + 0.2 * right.spatial)


def test_format_gate():
    text = "<think>" + respond()  # two <think> tags: the format fails
    gated = score(text)
    assert (gated.total, gated.count, gated.accuracy, gated.spatial) == (0.0, 0.0, 0.0, 0.0) and gated.error
    ungated = score(text, gate_on_format=False)
    assert ungated.format == 0.0 and ungated.accuracy == 1.0 and ungated.count == pytest.approx(1.0)
    assert ungated.total == pytest.approx(0.2 + 0.5 + 0.2 * ungated.spatial) and ungated.spatial > 0.99


def test_weights_are_config():
    r = score(respond(objects=PRED_OBJECTS[:2]), w_format=1.0, w_count=0.0, w_accuracy=0.0, w_spatial=1.0)
    assert r.total == pytest.approx(1.0 + r.spatial)
    r = score(respond(objects=PRED_OBJECTS[:2], relations=[]), lambda_obj=1.0, lambda_rel=0.0)
    assert r.count == pytest.approx(2 / 3)


# -- image size and ground truth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [None, (0, 100), (-1, 100), ("640", "480"), (math.nan, 1), (math.inf, 1), (True, 1), (640,), 640, {}]
)
def test_bad_image_size_is_a_sample_error(size):
    r = score(respond(), size=size)
    assert r.as_dict() == {**dict.fromkeys(("total", "format", "count", "accuracy", "spatial"), 0.0), "error": r.error}
    assert is_sample_error(r.error) and "image_size" in r.error


@pytest.mark.parametrize("size", [[200, 150], (200.0, 150.0), (np.int64(200), np.int32(150)), np.array([200, 150])])
def test_image_size_forms(size):
    assert score(respond(), size=size).total == pytest.approx(score(respond()).total)


@pytest.mark.parametrize(
    "gt,vanilla_ok",
    [
        ("no blocks at all", False),
        ("<scene>{}</scene>", False),
        (make_gt(scene="{broken"), True),
        (make_gt(scene='{"objects": [{"id": "cup.1", "bbox": [5, 5, 1, 1]}]}'), True),
        ("<answer>(B) x</answer>", True),
        (None, False),
    ],
)
def test_unusable_ground_truth_is_a_sample_error(gt, vanilla_ok):
    r = score(respond(), gt=gt)
    assert r.total == 0.0 and is_sample_error(r.error)
    v = score("<think>t</think><answer>(B) x</answer>", gt=gt, preset="vanilla")
    assert (not is_sample_error(v.error)) is vanilla_ok


def test_ground_truth_parsed_once():
    a = parse_ground_truth(GT)
    assert parse_ground_truth(GT) is a
    assert a.answer == ANSWER and a.names == ["cup", "table", "traffic light"] and a.n_rel == 2


def test_non_string_response_is_a_sample_error():
    for preset in ("spatialthinker", "strict", "vanilla"):
        r = score(b"bytes", preset=preset)
        assert r.total == 0.0 and is_sample_error(r.error)


# -- strict preset --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer,acc",
    [
        ("(B) on the table", 1),
        ("B", 1),
        ("(B)", 1),
        ("b) on the table", 1),
        ("on the table", 1),
        ("On the table.", 1),
        ("(C)", 0),
        ("(C) on the table", 0),
        ("under", 0),
    ],
)
def test_strict_accuracy_is_letter_tolerant(answer, acc):
    assert score(respond(answer=answer), preset="strict").accuracy == acc
    assert strict_answer_correct(answer, ANSWER) is bool(acc)


def test_strict_count_and_spatial():
    r = score(respond(), preset="strict")
    assert r.format == 1.0 and r.count == pytest.approx(1.0) and r.spatial == pytest.approx(1.0, abs=1e-5)
    # predicted relations although the GT has none: the relation term pays 0 (no Mg == 0 rule)
    gt = make_gt(relations=[])
    assert score(respond(), gt=gt, preset="strict").count == pytest.approx(0.7)
    # a wrongly named object earns no spatial credit, an extra one dilutes it (divided by max(n_pred, n_gt))
    renamed = [{"id": "dog.1", "bbox": OBJECTS[0]["bbox"]}, *PRED_OBJECTS[1:]]
    assert score(respond(objects=renamed), preset="strict").spatial == pytest.approx(2 / 3, abs=1e-5)
    extra = [*PRED_OBJECTS, {"id": "lamp.1", "bbox": [0, 0, 5, 5]}]
    assert score(respond(objects=extra), preset="strict").spatial == pytest.approx(3 / 4, abs=1e-5)


def test_strict_helpers():
    assert normalize_answer("b.") == "B" and normalize_answer("Right.") == "right"
    assert normalize_answer("right", ["left", "right"]) == "B"
    assert normalize_answer("tenth", [f"o{i}" for i in range(9)] + ["tenth"]) == "J"  # up to 10 options, A-J
    assert object_label("Dining Table_2") == "dining table" and object_label("7") == "7"


# -- vanilla preset -------------------------------------------------------------------------------------------------


def test_vanilla_reward():
    ok = score("<think>t</think><answer>(B) on the table</answer>", preset="vanilla")
    assert (ok.total, ok.format, ok.accuracy, ok.count, ok.spatial) == (1.0, 1.0, 1.0, 0.0, 0.0)
    wrong = score("<think>t</think><answer>(A) under</answer>", preset="vanilla")
    assert wrong.total == 0.5 and wrong.format == 1.0
    # no gate: the answer is paid without the format; without an answer block the whole response is the answer
    assert score("Sure. <think>t</think><answer>(B) on the table</answer>", preset="vanilla").total == 0.5
    assert score("(B) on the table", preset="vanilla").total == 0.5
    assert score(respond(), preset="vanilla").total == 0.5  # the four-block template is not the vanilla format
    assert (
        score("x", size=None, preset="vanilla").error
        == "response is not exactly <think>...</think><answer>...</answer>"
    )
    assert score(
        "<think>t</think><answer>(B) on the table</answer>",
        preset="vanilla",
        vanilla_w_format=0.2,
        vanilla_w_accuracy=0.8,
    ).total == pytest.approx(1.0)


# -- config, breakdown, batch, perfect response ---------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    c = RewardConfig()
    assert (c.preset, c.label_similarity) == ("spatialthinker", "exact")
    assert (c.w_format, c.w_count, c.w_accuracy, c.w_spatial) == (0.1, 0.2, 0.5, 0.2)
    assert (c.lambda_obj, c.lambda_rel, c.lambda_semantic, c.lambda_spatial) == (0.7, 0.3, 2.0, 1.0)
    assert c.gate_on_format and c.gate_spatial_on_accuracy
    assert (c.vanilla_w_format, c.vanilla_w_accuracy) == (0.5, 0.5)


def test_every_config_field_has_a_default_and_a_docstring():
    tree = ast.parse(inspect.getsource(RewardConfig))
    body = tree.body[0].body
    documented = set()
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
            and nxt.value.value.strip()
        ):
            documented.add(node.target.id)
    names = {f.name for f in fields(RewardConfig)}
    assert names == documented
    RewardConfig()  # every field has a default


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"preset": "paper"}, "preset"),
        ({"label_similarity": "glove"}, "label_similarity"),
        ({"w_format": -1}, "w_format"),
        ({"w_spatial": math.nan}, "w_spatial"),
        ({"lambda_obj": "0.7"}, "lambda_obj"),
        ({"lambda_semantic": True}, "lambda_semantic"),
        ({"lambda_spatial": math.inf}, "lambda_spatial"),
        ({"vanilla_w_accuracy": -0.5}, "vanilla_w_accuracy"),
        ({"gate_on_format": 1}, "gate_on_format"),
        ({"gate_spatial_on_accuracy": "yes"}, "gate_spatial_on_accuracy"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^reward\.{field} must"):
        RewardConfig(**kwargs)


def test_breakdown_as_dict():
    b = score(respond())
    assert isinstance(b, RewardBreakdown)
    assert list(b.as_dict()) == ["total", "format", "count", "accuracy", "spatial", "error"]


def test_score_batch_matches_single_calls_and_accepts_mappings():
    texts = [respond(), respond(answer="B"), "nothing", respond(objects=PRED_OBJECTS[:1]), respond(), "<think>"]
    gts = [GT, GT, GT, make_gt(relations=[]), make_gt(objects=OBJECTS[:2]), GT]
    items = [(t, g, SIZE) for t, g in zip(texts, gts)]
    batch = score_batch(items)
    assert batch == [compute_reward(*it) for it in items]
    assert score_batch({"response": t, "ground_truth": g, "image_size": SIZE} for t, g in zip(texts, gts)) == batch
    assert score_batch([]) == []
    bad = score_batch([("only two", GT)])[0]
    assert is_sample_error(bad.error)


def test_perfect_response_scores_one():
    text = perfect_response(GT)
    r = compute_reward(text, GT, SIZE)
    assert r.format == 1.0 and r.accuracy == 1.0 and r.count == 1.0
    assert r.total == pytest.approx(1.0, abs=1e-6)
    assert '"traffic_light.1"' in text  # ids rewritten into the paper's form, same names
    assert compute_reward(text, GT, SIZE, RewardConfig(preset="strict")).total == pytest.approx(1.0, abs=1e-5)
    custom = perfect_response(GT, observe="OBS", think="THINK")
    assert "<observe>OBS</observe>" in custom and "<think>THINK</think>" in custom


def test_perfect_response_rejects_unusable_ground_truth():
    with pytest.raises(ValueError):
        perfect_response("<answer>(A) x</answer>")


def test_internal_errors_are_contained(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(spatialthinker, "check_response", boom)
    monkeypatch.setattr(spatialthinker, "paper_batch", boom)  # the Numba reader of the common response
    r = compute_reward(respond(), GT, SIZE)
    assert r.total == 0.0 and "kaboom" in r.error and is_sample_error(r.error)
    rows = score_batch([(respond(), GT, SIZE)] * 3)
    assert all("kaboom" in b.error for b in rows)


def test_relations_fixture_consistent():
    assert len(RELATIONS) == len(PRED_RELATIONS)
