"""Independent checks used by the datagen tests: answers recomputed from the raw boxes, input digests."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from datagen import geometry as geo
from datagen.questions import EXISTENCE_PHRASES, question_words, singularize
from datagen.vg import VGImage, VGObject

PUBLISHED_COLUMNS = [
    "image_id",
    "images",
    "problem",
    "question_only",
    "question_with_options",
    "options",
    "answer",
    "answer_only",
    "answer_text",
    "answer_text_only",
    "answer_option_text",
    "answer_option_text_only",
    "category",
    "level",
    "rating",
]

_PATTERNS = {
    "relation": [
        r"Where is the (?P<a>.+) relative to the (?P<b>.+)\?",
        r"What is the spatial relation of the (?P<a>.+) to the (?P<b>.+)\?",
    ],
    "reach": [
        r"Can the (?P<p>.+) reach the (?P<a>.+)\?",
        r"Which can the (?P<p>.+) reach, the (?P<a>.+) or the (?P<b>.+)\?",
    ],
    "size": [
        r"Which is (?P<ask>larger|smaller) in the image, the (?P<a>.+) or the (?P<b>.+)\?",
        r"Which appears (?P<ask>largest|smallest) in the image: the (?P<a>.+), the (?P<b>.+) or the (?P<c>.+)\?",
    ],
    "orientation": [r"Is the (?P<a>.+) oriented horizontally or vertically\?"],
    "instance_location": [r"In which part of the image is the (?P<a>.+)\?"],
    "depth": [r"Which is (?P<ask>closer to|farther from) the camera, the (?P<a>.+) or the (?P<b>.+)\?"],
    "distance": [r"Which is (?P<ask>closer to|farther from) the (?P<a>.+), the (?P<b>.+) or the (?P<c>.+)\?"],
    "count": [r"How many (?P<a>.+) are there in the image\?"],
    "existence": [
        r"Is there an? (?P<a>.+?) (?P<rel>on|under|to the left of|to the right of|above|below|near) the (?P<b>.+)\?"
    ],
}


def tree_digest(root: Path) -> str:
    """A digest of every file's relative path and bytes under ``root`` (to check that an input is intact)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def parse(category: str, question: str) -> dict:
    """The named parts of a question (object names, asked direction)."""
    for pat in _PATTERNS[category]:
        m = re.fullmatch(pat, question)
        if m:
            return m.groupdict()
    raise AssertionError(f"question does not match any {category} wording: {question!r}")


def _the(img: VGImage, name: str) -> VGObject:
    objs = [o for o in img.objects.values() if o.name == name]
    assert len(objs) == 1, f"'the {name}' must name exactly one object, found {len(objs)}"
    return objs[0]


def _gap(a: VGObject, b: VGObject) -> float:
    dx = max(0.0, b.x - (a.x + a.w), a.x - (b.x + b.w))
    dy = max(0.0, b.y - (a.y + a.h), a.y - (b.y + b.h))
    return math.hypot(dx, dy)


def check_answer(category: str, question: str, options: list[str], answer: str, img: VGImage) -> None:
    """Recompute the answer of a question from the raw boxes of ``img`` and compare with ``answer``."""
    parts = parse(category, question)
    W, H = img.width, img.height
    wrong = [o for o in options if o != answer]
    assert answer in options and len(set(options)) == len(options) and 2 <= len(options) <= 4
    if category == "relation":
        a, b = _the(img, parts["a"]), _the(img, parts["b"])
        assert geo.relation_holds(answer, a.box, b.box, (W, H)), (question, answer)
        for w in wrong:
            assert not geo.relation_holds(w, a.box, b.box, (W, H), loose=True), (question, w)
        direction = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}
        if answer in direction:  # the plain meaning, from the centres
            axis, sign = direction[answer]
            assert sign * (a.center[axis] - b.center[axis]) > 0
    elif category == "reach":
        p = _the(img, parts["p"])
        if parts.get("b") is None:
            t = _the(img, parts["a"])
            g = _gap(p, t) / p.h
            assert (answer == "yes" and g <= 0.3) or (answer == "no" and g >= 0.8), (question, answer, g)
        else:
            t, other = _the(img, answer), _the(img, wrong[0])
            assert _gap(p, t) <= 0.3 * p.h and _gap(p, other) >= 0.8 * p.h
    elif category == "size":
        names = [parts[k] for k in ("a", "b", "c") if parts.get(k)]
        areas = {n: _the(img, n).w * _the(img, n).h for n in names}
        others = [areas[n] for n in names if n != answer]
        if parts["ask"] in ("larger", "largest"):
            assert areas[answer] >= 1.5 * max(others)
        else:
            assert areas[answer] * 1.5 <= min(others)
    elif category == "orientation":
        o = _the(img, parts["a"])
        assert (answer == "horizontally" and o.w >= 1.5 * o.h) or (answer == "vertically" and o.h >= 1.5 * o.w)
    elif category == "instance_location":
        cx, cy = _the(img, parts["a"]).center
        assert answer == ("top" if cy < H / 2 else "bottom") + " " + ("left" if cx < W / 2 else "right")
        assert abs(cx - W / 2) >= 0.08 * W and abs(cy - H / 2) >= 0.08 * H
    elif category == "depth":
        a, b = _the(img, parts["a"]), _the(img, parts["b"])
        bottoms = {a.name: a.y + a.h, b.name: b.y + b.h}
        closer = max(bottoms, key=bottoms.get)
        assert abs(bottoms[a.name] - bottoms[b.name]) >= 0.1 * H
        assert answer == (closer if parts["ask"] == "closer to" else min(bottoms, key=bottoms.get))
    elif category == "distance":
        a = _the(img, parts["a"])
        d = {n: math.dist(a.center, _the(img, n).center) for n in (parts["b"], parts["c"])}
        near, far = sorted(d, key=d.get)
        assert d[far] >= 1.3 * d[near]
        assert answer == (near if parts["ask"] == "closer to" else far)
    elif category == "count":
        key = singularize(parts["a"])
        assert int(answer) == sum(1 for o in img.objects.values() if singularize(o.name) == key) >= 1
    elif category == "existence":
        pred = {v: k for k, v in EXISTENCE_PHRASES.items()}[parts["rel"]]
        b = _the(img, parts["b"])
        subjects = [o for o in img.objects.values() if singularize(o.name) == singularize(parts["a"])]
        if answer == "yes":
            assert any(geo.relation_holds(pred, o.box, b.box, (W, H)) for o in subjects)
        else:
            assert not any(geo.relation_holds(pred, o.box, b.box, (W, H), loose=True) for o in subjects)
    else:
        raise AssertionError(f"unknown category {category}")


def check_scene(scene: dict, question: str, img: VGImage) -> None:
    """The scene is the non-empty question subgraph: ids ``name.N``, boxes of the image, relations inside."""
    assert scene["objects"], question
    boxes = sorted(tuple(o.box) for o in img.objects.values())
    ids = set()
    for o in scene["objects"]:
        assert set(o) == {"id", "bbox"}
        assert re.fullmatch(r"[A-Za-z_]+\.\d+", o["id"]), o["id"]
        assert tuple(float(v) for v in o["bbox"]) in boxes
        ids.add(o["id"])
    assert len(ids) == len(scene["objects"])
    words = question_words(question)
    named = [o for o in img.objects.values() if o.name in words or singularize(o.name) in words]
    assert len(named) == len(scene["objects"]), (question, [o.name for o in named], scene)
    for r in scene["relationships"]:
        assert r["subject"] in ids and r["object"] in ids


def scene_of(answer_option_text: str) -> dict:
    """The parsed ``<scene>`` JSON of a ground-truth string."""
    return json.loads(re.search(r"<scene>(.*)</scene>", answer_option_text, re.DOTALL).group(1))
