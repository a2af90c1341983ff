"""The Numba reader (rewards.fast.scan) against the Python rules: the same rows, bit for bit, on mutated responses."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from rewards.fast.scan import _number
from rewards.presets import spatialthinker
from rewards.similarity import get_similarity
from rewards.spatial import RewardConfig, parse_ground_truth, perfect_response, score_rows
from tests.rewards.helpers import GT, SIZE, respond

NAMES = ["cup", "dining_table", "Traffic_Light", "_dog_", "tree", "window", "book", "A"]

NUMBER_FORMS = [
    "0", "-0", "-0.0", "01", "1.", ".5", "1e2", "1E-3", "2.5e+1", "-12.75", "1e22", "1e23", "1e-22", "3e-23",
    "123456789012345", "1234567890123456", "9007199254740993", "0.1", "0.30000000000000004", "1.0000000000000002",
    "123.456789012345", "0.000000000000000000000000000000001", "1e400", "-1e400", "true", "false", "null", "NaN",
    "Infinity", "-", "1e", "1e+", "\"5\"", "[5]", "5 ", " 5", "1_0", "0x10", "1e0001", "1e00001",
]  # fmt: skip

SNIPPETS = [
    "{", "}", "[", "]", '"', ",", ":", ".", "-", "e", "0", "7", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\\",
    "\\n", "\\u0063", "_", "A", "z", "<", ">", "/", "<scene>", "</scene>", "<think>", "</answer>", "<Answer>",
    '"id": "cup.9", ', '"bbox": [1, 2, 3, 4], ', '"extra": 1, ', '"objects": [], ', '"relationships": [], ',
    '"subject": "cup.1", ', "\u00e9", "\x00", "\x1f",
]  # fmt: skip


def _ground_truths(rng: random.Random, n: int) -> list[tuple[str, list]]:
    out = []
    for g in range(n):
        w, h = rng.choice([(640, 480), (500, 375), (37, 29)])
        objs = []
        for k in range(rng.randint(0, 5)):
            x, y = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            box = [
                round(x, rng.choice([0, 1, 3])),
                round(y, 1),
                round(x + rng.uniform(1, w / 2), 2),
                round(y + 9.5, 1),
            ]
            name = rng.choice(NAMES + ["traffic light", "Dining-Table", "caf\u00e9"])
            objs.append({"id": f"{name}.{k + 1}", "bbox": box})
        rels = [
            {"subject": objs[i]["id"], "predicate": "left of", "object": objs[i + 1]["id"]}
            for i in range(rng.randint(0, max(0, len(objs) - 1)))
        ]
        scene = json.dumps({"objects": objs, "relationships": rels})
        letter = "ABCD"[g % 4]
        out.append((f"<scene>{scene}</scene>\n<answer>({letter}) Option {g}</answer>", [w, h]))
    return out


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op = rng.random()
        i = rng.randrange(len(text) + 1)
        if op < 0.3:
            numbers = [m for m in range(len(text)) if text[m].isdigit() and (m == 0 or not text[m - 1].isdigit())]
            if numbers:
                start = rng.choice(numbers)
                end = start
                while end < len(text) and (text[end].isdigit() or text[end] in ".eE+-"):
                    end += 1
                text = text[:start] + rng.choice(NUMBER_FORMS) + text[end:]
        elif op < 0.55:
            text = text[:i] + rng.choice(SNIPPETS) + text[i:]
        elif op < 0.75:
            text = text[:i] + text[i + rng.randint(1, 4) :]
        elif op < 0.85:
            text = text.replace("(", rng.choice(["(", " (", "\n(", "(\t"]), 1).upper()
        elif op < 0.88:  # one key and its value gone
            value = r'"\w+": ("[^"]*"|\[[^\]]*\])'
            pairs = list(re.finditer(rng.choice([value + "(, )?", ", " + value]), text))
            if pairs:
                m = rng.choice(pairs)
                text = text[: m.start()] + text[m.end() :]
        elif op < 0.92:
            a, b = rng.sample(["cup.1", "dining_table.2", "tree.3", "_dog_.4", "A.1"], 2)
            text = text.replace(a, b)
        else:
            text = text.replace('"bbox"', rng.choice(['"bbox"', '"box"', ' "bbox" ', '"bbox":1,"bbox"']), 1)
    return text


def _responses(rng: random.Random, gts: list, n: int) -> list[tuple]:
    items = []
    for _ in range(n):
        gt, size = rng.choice(gts)
        base = perfect_response(gt)
        if rng.random() < 0.3:  # a different prediction: other objects, other answer, other spacing
            other, _ = rng.choice(gts)
            base = perfect_response(other).replace("\n", rng.choice(["\n", "", "  "]))
        text = _mutate(rng, base)
        if rng.random() < 0.3:  # re-indented JSON or extra spaces inside the scene
            text = text.replace(", ", rng.choice([",", ",\n  ", " , "])).replace(": ", rng.choice([":", " : "]))
        items.append((text, gt, size))
    return items


def _python_rows(items: list, cfg: RewardConfig) -> list:
    out: list = [None] * len(items)
    ready = [(k, r, parse_ground_truth(g), s) for k, (r, g, s) in enumerate(items)]
    spatialthinker._score_paper_python(out, ready, cfg, get_similarity("exact"))
    return out


def _fast_rows(items: list, cfg: RewardConfig) -> tuple[list, int]:
    out: list = [None] * len(items)
    ready = [(k, r, parse_ground_truth(g), s) for k, (r, g, s) in enumerate(items)]
    rest = spatialthinker._score_paper_fast(out, ready, cfg)
    spatialthinker._score_paper_python(out, rest, cfg, get_similarity("exact"))
    return out, len(items) - len(rest)


@pytest.mark.parametrize(
    "cfg",
    [
        RewardConfig(),
        RewardConfig(gate_spatial_on_accuracy=False, gate_on_format=False, w_spatial=0.7, lambda_obj=0.4),
        RewardConfig(lambda_semantic=0.0, lambda_spatial=3.0, w_count=1.3),
    ],
    ids=["paper", "ungated", "weights"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_reader_matches_python_rules_on_mutations(cfg, seed):
    rng = random.Random(seed)
    items = _responses(rng, _ground_truths(rng, 24), 3000)
    expected = _python_rows(items, cfg)
    got, taken = _fast_rows(items, cfg)
    mismatches = [(items[k][0], e, g) for k, (e, g) in enumerate(zip(expected, got)) if e != g]
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[0]}"
    # the mutations must exercise both sides of the reader
    assert 0.25 * len(items) < taken < 0.9 * len(items), taken


def _structure_variants() -> list[str]:
    """Scenes that are valid JSON but change one key or value of the template (each key missing, repeated, renamed,
    of another type), plus a few top-level shapes."""
    base = {
        "objects": [{"id": "cup.1", "bbox": [10, 10, 50, 60]}, {"id": "table.1", "bbox": [0, 60, 200, 120]}],
        "relationships": [{"subject": "cup.1", "predicate": "on", "object": "table.1"}],
    }
    others = [None, 1, 2.5, True, "cup.1", "", [], {}, [1, 2, 3, 4], ["cup.1"], {"id": "cup.1"}]
    scenes = []
    for part, fields in (("objects", ("id", "bbox")), ("relationships", ("subject", "predicate", "object"))):
        for key in fields:
            for variant in ("drop", "rename", "extra", "first", *range(len(others))):
                scene = json.loads(json.dumps(base))
                entry = scene[part][0]
                if variant == "drop":
                    del entry[key]
                elif variant == "rename":
                    entry[key.upper()] = entry.pop(key)
                elif variant == "extra":
                    entry["note"] = "x"
                elif variant == "first":  # the key moved to the front
                    scene[part][0] = {key: entry.pop(key), **entry}
                else:
                    entry[key] = others[variant]
                scenes.append(json.dumps(scene))
        for value in others:
            scenes.append(json.dumps({**base, part: value}))
        scenes.append(json.dumps({k: v for k, v in base.items() if k != part}))
    text = json.dumps(base)
    one_object = '{"id": "dog.1", "bbox": [1, 1, 2, 2]}'
    one_relation = '{"subject": "dog.1", "predicate": "near", "object": "cup.1"}'
    scenes += [
        "{}", "[]", '"scene"', "null", json.dumps({**base, "note": 1}), json.dumps({"relationships": [], **base}),
        # repeated keys: JSON keeps the last one
        text.replace('"id": "cup.1", ', '"id": "cup.1", "id": "cup.2", '),
        text.replace('"objects": [', f'"objects": [{one_object}], "objects": ['),
        text.replace('"relationships": [', f'"relationships": [{one_relation}], "relationships": ['),
        text.replace("[10, 10, 50, 60]", "[10, 10, 5, 60]"), text.replace('"table.1", "bbox"', '"cup.1", "bbox"'),
        text.replace("cup.1", "cup_.1"), text + " ", " " + text, text.replace("on", 'o\\"n'),
        text.replace("cup.1", "cup\\u002e1"), text.replace("50", "5e1"),
    ]  # fmt: skip
    return scenes


def test_fast_reader_matches_python_rules_on_structure_variants():
    items = [(respond(scene=scene), GT, SIZE) for scene in _structure_variants()]
    items += [(r.replace("(B)", "(b)").replace("on the", " on the"), g, s) for r, g, s in items]
    for cfg in (RewardConfig(), RewardConfig(gate_on_format=False, gate_spatial_on_accuracy=False)):
        expected = _python_rows(items, cfg)
        got, taken = _fast_rows(items, cfg)
        for (response, _, _), e, g in zip(items, expected, got):
            assert e == g, response
        assert 10 < taken < len(items) / 2


def test_fast_reader_takes_the_common_response():
    items = [(respond(), GT, SIZE)] * 4 + [(perfect_response(GT), GT, list(SIZE))]
    _, taken = _fast_rows(items, RewardConfig())
    assert taken == 5
    assert score_rows(items) == _python_rows(items, RewardConfig())


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "-0.0", "1e2", "2.5e+1", "-12.75", "1e22", "1e-22", "123456789012345", "0.1", "0.123456789012345",
     "123.456789012345", "0.000000000000000000001", "4.5e-7", "0e999", "-0e1", "8.98846567431158e7", "1.7976931348"],
)  # fmt: skip
def test_number_reader_rounds_as_float(text):
    buf = np.frombuffer((text + "]").encode(), dtype=np.uint8)
    value, after = _number(buf, 0, buf.shape[0])
    assert after == len(text)
    expected = float(json.loads(text))
    assert value == expected and np.signbit(value) == np.signbit(expected)


@pytest.mark.parametrize(
    "text",
    [
        "1234567890123456",
        "0.30000000000000004",
        "0.1234567890123456",
        "1e23",
        "1e-23",
        "0.0000000000000000000000001",
        "1e00001",
    ],
)
def test_number_reader_leaves_long_or_large_numbers_to_python(text):
    buf = np.frombuffer((text + "]").encode(), dtype=np.uint8)
    assert _number(buf, 0, buf.shape[0])[1] == -1


def test_non_ascii_responses_go_to_the_python_rules():
    response = respond().replace("a cup on a table", "une tasse \u00e0 caf\u00e9")
    _, taken = _fast_rows([(response, GT, SIZE)], RewardConfig())
    assert taken == 0
    assert score_rows([(response, GT, SIZE)])[0][0] > 0.9
