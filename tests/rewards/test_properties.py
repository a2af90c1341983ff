"""Property tests: the reward never raises, whatever it is given, and its terms stay in range."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.spatial import INTERNAL_ERROR, RewardConfig, compute_reward, perfect_response, score_batch
from tests.rewards.helpers import GT, SIZE, make_gt, respond

CONFIGS = [
    RewardConfig(),
    RewardConfig(preset="strict"),
    RewardConfig(preset="vanilla"),
    RewardConfig(gate_on_format=False, gate_spatial_on_accuracy=False),
]
PERFECT = perfect_response(GT)

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**400), 10**400), st.booleans())
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(), st.text(max_size=10))
json_val = st.recursive(
    json_leaf,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=20,
)
ids = st.one_of(st.from_regex(r"[a-z_]{1,6}\.[0-9]{1,2}", fullmatch=True), st.text(max_size=8))
anything = st.one_of(
    st.none(),
    st.text(max_size=50),
    st.integers(),
    st.floats(),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.tuples(numbers, numbers),
)


def check(r, cfg):
    d = r.as_dict()
    for k in ("total", "format", "count", "accuracy", "spatial"):
        assert isinstance(d[k], float) and math.isfinite(d[k]), d
    assert isinstance(r.error, str)
    assert not r.error.startswith(INTERNAL_ERROR), r.error  # the scorer failed: a bug, not a score
    assert 0.0 <= r.total <= 1.0 + 1e-9
    assert r.format in (0.0, 1.0) and r.accuracy in (0.0, 1.0)
    assert 0.0 <= r.spatial <= 1.0 and 0.0 <= r.count <= 1.0 + 1e-9


def dump(value) -> str:
    return json.dumps(value, allow_nan=True)


SETTINGS = {"max_examples": 150, "deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(**SETTINGS)
@given(st.text(max_size=400), st.sampled_from(CONFIGS))
def test_arbitrary_text(text, cfg):
    check(compute_reward(text, GT, SIZE, cfg), cfg)


@settings(**SETTINGS)
@given(json_val, st.sampled_from(CONFIGS))
def test_arbitrary_scene_json(scene, cfg):
    check(compute_reward(respond(scene=dump(scene)), GT, SIZE, cfg), cfg)


@settings(**SETTINGS)
@given(st.lists(st.tuples(ids, st.lists(numbers, min_size=3, max_size=5)), max_size=8), st.sampled_from(CONFIGS))
def test_random_objects(objs, cfg):
    scene = dump({"objects": [{"id": i, "bbox": b} for i, b in objs], "relationships": []})
    check(compute_reward(respond(scene=scene, answer="(B) on the table"), GT, SIZE, cfg), cfg)


@settings(**SETTINGS)
@given(st.integers(0, 2000), st.integers(0, 2000), st.text(max_size=20), st.sampled_from(CONFIGS))
def test_mutated_perfect_response(i, j, junk, cfg):
    i, j = sorted((min(i, len(PERFECT)), min(j, len(PERFECT))))
    check(compute_reward(PERFECT[:i] + junk + PERFECT[j:], GT, SIZE, cfg), cfg)


@settings(**SETTINGS)
@given(anything, anything, anything, st.sampled_from(CONFIGS))
def test_arbitrary_arguments(response, ground_truth, image_size, cfg):
    check(compute_reward(response, ground_truth, image_size, cfg), cfg)


@settings(**SETTINGS)
@given(json_val, st.tuples(numbers, numbers), st.text(max_size=30))
def test_arbitrary_ground_truth_scene_and_size(scene, size, answer):
    gt = make_gt(scene=dump(scene), answer=answer)
    for cfg in CONFIGS:
        check(compute_reward(respond(), gt, size, cfg), cfg)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=60), st.sampled_from([GT, make_gt(relations=[]), "junk"])), max_size=12))
def test_batches_agree_with_single_calls(pairs):
    items = [(t if k % 2 else PERFECT[: len(t) * 7], g, SIZE) for k, (t, g) in enumerate(pairs)]
    rows = score_batch(items)
    assert rows == [compute_reward(*it) for it in items]
    for r in rows:
        check(r, CONFIGS[0])


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"], float("nan"), {"response": 1}])
def test_non_string_response(bad):
    for cfg in CONFIGS:
        check(compute_reward(bad, GT, SIZE, cfg), cfg)
