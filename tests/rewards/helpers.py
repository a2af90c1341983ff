"""Hand-made ground truths and responses for the reward tests."""

from __future__ import annotations

import json
import math

OBJECTS = [
    {"id": "cup.1", "bbox": [10, 10, 50, 60]},
    {"id": "table.1", "bbox": [0, 60, 200, 120]},
    {"id": "traffic light.1", "bbox": [120, 5, 140, 50]},
]
RELATIONS = [
    {"subject": "cup.1", "predicate": "on", "object": "table.1"},
    {"subject": "traffic light.1", "predicate": "behind", "object": "table.1"},
]
ANSWER = "(B) on the table"
SIZE = (200, 150)


def make_gt(objects=None, relations=None, answer=ANSWER, scene=None) -> str:
    """An STVQA ``answer_option_text`` ground truth."""
    objects = OBJECTS if objects is None else objects
    relations = RELATIONS if relations is None else relations
    if scene is None:
        scene = json.dumps({"objects": objects, "relationships": relations})
    return f"<scene>{scene}</scene>\n<answer>{answer}</answer>"


GT = make_gt()

# the ground-truth objects with ids in the paper's id form
PRED_OBJECTS = [
    {"id": "cup.1", "bbox": [10, 10, 50, 60]},
    {"id": "table.1", "bbox": [0, 60, 200, 120]},
    {"id": "traffic_light.1", "bbox": [120, 5, 140, 50]},
]
PRED_RELATIONS = [
    {"subject": "cup.1", "predicate": "on", "object": "table.1"},
    {"subject": "traffic_light.1", "predicate": "behind", "object": "table.1"},
]


def scene_json(objects=None, relations=None) -> str:
    objects = PRED_OBJECTS if objects is None else objects
    relations = PRED_RELATIONS if relations is None else relations
    return json.dumps({"objects": objects, "relationships": relations})


def respond(objects=None, relations=None, answer=ANSWER, scene=None, observe="a cup on a table", think="so B") -> str:
    """A template response (blocks in order, nothing outside them)."""
    scene = scene_json(objects, relations) if scene is None else scene
    return f"<observe>{observe}</observe>\n<scene>{scene}</scene>\n<think>{think}</think>\n<answer>{answer}</answer>"


def with_box(index: int, box) -> str:
    """The perfect response with the box of object ``index`` replaced (``box`` is raw JSON text)."""
    parts = []
    for i, o in enumerate(PRED_OBJECTS):
        b = box if i == index else json.dumps(o["bbox"])
        parts.append(f'{{"id": "{o["id"]}", "bbox": {b}}}')
    return respond(
        scene='{"objects": [' + ", ".join(parts) + '], "relationships": ' + json.dumps(PRED_RELATIONS) + "}"
    )


def ref_ciou01(a, b, eps=1e-7):
    """CIoU01 written out from the recipe (section 2), for comparison."""
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    iou = inter / (wa * ha + wb * hb - inter + eps)
    rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2 + eps
    v = 4 / math.pi**2 * (math.atan(wb / (hb + eps)) - math.atan(wa / (ha + eps))) ** 2
    alpha = v / ((1 - iou) + v) if (1 - iou) + v else 0.0
    return (iou - rho2 / c2 - alpha * v + 1) / 2


def norm(box, size=SIZE):
    """A pixel box divided by the image size."""
    w, h = size
    return [box[0] / w, box[1] / h, box[2] / w, box[3] / h]
