"""Format rules of each preset, one hand-made response per rule."""

from __future__ import annotations

import json

import pytest

from rewards.spatial import RewardConfig, compute_reward
from rewards.template import BAD_CORNERS, check_response, check_tags, parse_response, vanilla_format
from tests.rewards.helpers import ANSWER, GT, PRED_OBJECTS, PRED_RELATIONS, SIZE, respond, scene_json, with_box

PERFECT = respond()


def fmt(text, preset="spatialthinker"):
    return compute_reward(text, GT, SIZE, RewardConfig(preset=preset))


# -- spatialthinker (the paper's code) ----------------------------------------------------------------------------


def test_template_response_passes():
    r = fmt(PERFECT)
    assert r.format == 1.0 and r.error == ""
    assert r.total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "text",
    [
        # the paper's code checks neither the order of the blocks nor text outside them
        "<answer>(B) on the table</answer><think>t</think><scene>" + scene_json() + "</scene><observe>o</observe>",
        "Sure! Here it is.\n" + PERFECT + "\nHope this helps.",
        PERFECT.replace("</scene>\n", "</scene>\nsome words between blocks\n"),
        # an extra closing tag is fine: only opening tags are counted
        PERFECT + "</think>",
        # an empty answer or observe block still has the form
        respond(observe=""),
    ],
    ids=["any-order", "text-outside", "text-between", "extra-closing-tag", "empty-observe"],
)
def test_paper_format_is_permissive_about_layout(text):
    assert fmt(text).format == 1.0


@pytest.mark.parametrize("tag", ["observe", "scene", "think", "answer"])
def test_each_block_is_required(tag):
    text = PERFECT
    start, end = text.index(f"<{tag}>"), text.index(f"</{tag}>") + len(tag) + 3
    r = fmt(text[:start] + text[end:])
    assert r.format == 0.0 and r.total == 0.0 and f"<{tag}>" in r.error


@pytest.mark.parametrize("tag", ["observe", "scene", "think", "answer"])
def test_each_opening_tag_exactly_once(tag):
    assert fmt(PERFECT + f" <{tag}>").format == 0.0
    assert fmt(PERFECT.replace(f"<{tag}>", f"<{tag}><{tag}>", 1)).format == 0.0


def test_unclosed_block_fails():
    assert fmt(PERFECT.replace("</answer>", "")).format == 0.0
    assert fmt(PERFECT.replace("</observe>", "")).format == 0.0
    assert check_tags(PERFECT.replace("</think>", "")) == "<think> is never closed"


def test_uppercase_tags_are_not_tags():
    assert fmt(PERFECT.replace("<think>", "<THINK>").replace("</think>", "</THINK>")).format == 0.0


@pytest.mark.parametrize(
    "scene",
    ["{not json", "[1, 2]", "{}", '"text"', "null", '{"objects": {}}', '{"objects": [], "relationships": null}'],
)
def test_scene_must_be_a_nonempty_object_with_lists(scene):
    assert fmt(respond(scene=scene)).format == 0.0


def test_missing_lists_mean_empty():
    r = fmt(respond(scene=json.dumps({"objects": PRED_OBJECTS})))
    assert r.format == 1.0
    r = fmt(respond(scene=json.dumps({"relationships": PRED_RELATIONS})))
    assert r.format == 1.0 and r.count == 0.0  # no objects key: the count term pays nothing
    r = fmt(respond(scene=json.dumps({"other": 1})))
    assert r.format == 1.0


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "cup.1", "bbox": [1, 2, 3, 4], "label": "cup"},
        {"id": "cup.1"},
        {"bbox": [1, 2, 3, 4]},
        {"name": "cup.1", "bbox": [1, 2, 3, 4]},
        ["cup.1", [1, 2, 3, 4]],
        "cup.1",
        None,
    ],
    ids=["extra-key", "no-bbox", "no-id", "name-key", "list", "string", "null"],
)
def test_objects_have_exactly_id_and_bbox(obj):
    assert fmt(respond(objects=[obj, *PRED_OBJECTS[1:]])).format == 0.0


@pytest.mark.parametrize(
    "obj_id,ok",
    [
        ("cup.1", True),
        ("dining_table.12", True),
        ("Cup.1", True),
        ("_cup.1", True),
        ("cup 1", False),
        ("cup_1", False),
        ("cup", False),
        ("dining table.1", False),
        ("dining-table.1", False),
        ("cup2.1", False),
        ("cup.1a", False),
        ("cup.", False),
        (".1", False),
        ("cup.1\n", False),
        (7, False),
    ],
)
def test_id_form(obj_id, ok):
    objects = [{"id": obj_id, "bbox": [10, 10, 50, 60]}, *PRED_OBJECTS[1:]]
    r = fmt(respond(objects=objects, relations=[]))
    assert r.format == (1.0 if ok else 0.0), r.error


def test_ids_unique():
    objects = [*PRED_OBJECTS, {"id": "cup.1", "bbox": [0, 0, 5, 5]}]
    r = fmt(respond(objects=objects))
    assert r.format == 0.0 and "unique" in r.error


@pytest.mark.parametrize(
    "box",
    ["[1, 2, 3]", "[1, 2, 3, 4, 5]", '["10", "10", "50", "60"]', "[[10, 10], [50, 60]]", "[10, 10, 50, null]", "{}"],
)
def test_bbox_is_four_numbers(box):
    r = fmt(with_box(0, box))
    assert r.format == 0.0 and r.error != BAD_CORNERS


@pytest.mark.parametrize(
    "box",
    [
        "[50, 10, 10, 60]",  # x1 > x2
        "[10, 60, 50, 10]",  # y1 > y2
        "[10, 10, NaN, 60]",
        "[10, 10, Infinity, 60]",
        "[-Infinity, 10, 50, 60]",
        "[true, 10, 50, 60]",
        "[10, 10, 50, false]",
        "[10, 10, 1" + "0" * 400 + ", 60]",  # an integer beyond the float range
        "[10, 10, 1e400, 60]",
    ],
)
def test_box_that_is_not_valid_corners_fails_the_format(box):
    """The deliberate difference from the paper's code (which scores these outside [0, 1] or crashes)."""
    r = fmt(with_box(0, box))
    assert (r.format, r.count, r.accuracy, r.spatial, r.total) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert r.error == BAD_CORNERS


@pytest.mark.parametrize("box", ["[10, 10, 10, 60]", "[10, 10, 50, 10]", "[10.5, 10.25, 50.0, 60]", "[-5, -5, 0, 0]"])
def test_degenerate_and_float_boxes_are_valid(box):
    assert fmt(with_box(0, box)).format == 1.0


@pytest.mark.parametrize(
    "rel,ok",
    [
        ({"subject": "cup.1", "predicate": "on", "object": "table.1"}, True),
        ({"subject": "cup.1", "predicate": "on", "object": "table.1", "score": 0.9}, True),  # extra keys allowed
        ({"subject": "lamp.7", "predicate": "near", "object": "sofa.2"}, True),  # ends need not exist
        ({"subject": "cup.1", "object": "table.1"}, False),
        ({"subject": "cup.1", "predicate": 3, "object": "table.1"}, False),
        ({"subject": "cup 1", "predicate": "on", "object": "table.1"}, False),
        ({"subject": "cup.1", "predicate": "on", "object": "table"}, False),
        (["cup.1", "on", "table.1"], False),
    ],
)
def test_relationship_rules(rel, ok):
    assert fmt(respond(relations=[rel])).format == (1.0 if ok else 0.0)


def test_check_response_returns_the_parts():
    err, ids, flat, n_rel, has_objects, answer = check_response(PERFECT)
    assert err == "" and ids == [o["id"] for o in PRED_OBJECTS] and n_rel == 2 and has_objects
    assert flat == [v for o in PRED_OBJECTS for v in o["bbox"]]
    assert answer == ANSWER


def test_only_the_first_scene_block_counts_when_tags_repeat():
    # a second </scene> after the first: the block ends at the first one (the paper's lazy regex)
    assert fmt(PERFECT.replace("</scene>", "</scene> </scene>")).format == 1.0


# -- strict ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,why",
    [
        ("<answer>(B)</answer>", "missing blocks"),
        (PERFECT.replace("<think>", "<think><answer>"), "nested"),
        ("hello " + PERFECT, "text outside"),
        (respond(scene="{not json"), "bad json"),
        (with_box(0, "[50, 10, 10, 60]"), "inverted box"),
        (with_box(0, "[0, 0, 1]"), "short box"),
        (respond(scene='{"objects": [{"bbox": [0, 0, 1, 1]}]}'), "no id"),
        (respond(scene='{"objects": [], "relationships": [{"subject": 1}]}'), "bad relation"),
        (respond(scene="[1, 2]"), "not an object"),
        (respond(answer="  "), "empty answer"),
        ("<think>x</think>" + PERFECT.replace("<think>so B</think>", ""), "wrong order"),
    ],
)
def test_strict_format_failures(text, why):
    r = fmt(text, "strict")
    assert r.format == 0.0 and r.total == 0.0, why


def test_strict_accepts_the_template_and_free_ids():
    assert fmt(PERFECT, "strict").format == 1.0
    # strict reads any non-empty id ("cup 1", "dining table.1") and takes the name before the index
    objects = [{"id": "cup 1", "bbox": [10, 10, 50, 60]}, *PRED_OBJECTS[1:]]
    assert fmt(respond(objects=objects), "strict").format == 1.0
    assert parse_response(respond(objects=objects)).objects[0][1] == "cup"


# -- vanilla --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,ok",
    [
        ("<think>reasoning</think><answer>(B) on the table</answer>", True),
        ("<think>a\nb</think>\n\n<answer>(B) on the table</answer>", True),
        (" <think>r</think><answer>x</answer>", False),
        ("<think>r</think><answer>x</answer>\n", False),
        ("<observe>o</observe><think>r</think><answer>x</answer>", False),
        ("<think>r</think> text <answer>x</answer>", False),
        ("<answer>x</answer>", False),
        (PERFECT, False),
    ],
)
def test_vanilla_format(text, ok):
    assert vanilla_format(text) is ok
    assert fmt(text, "vanilla").format == (1.0 if ok else 0.0)
