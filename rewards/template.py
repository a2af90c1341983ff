"""The SpatialThinker response template and a parser that never raises.

A well-formed response is exactly::

    <observe>...</observe>
    <scene>{"objects": [{"id": "cup.1", "bbox": [x1, y1, x2, y2]}, ...],
            "relationships": [{"subject": "cup.1", "predicate": "on", "object": "table.1"}, ...]}</scene>
    <think>...</think>
    <answer>...</answer>

with only whitespace between and around the blocks.  Boxes are absolute
pixel coordinates of the input image, ``x1 <= x2`` and ``y1 <= y2``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

TAGS = ("observe", "scene", "think", "answer")

SYSTEM_PROMPT = (
    "You are a spatial reasoning assistant. First describe the relevant parts of the image in "
    "<observe></observe>. Then write the question-relevant scene graph as JSON in <scene></scene>: "
    '{"objects": [{"id": "name.1", "bbox": [x1, y1, x2, y2]}], '
    '"relationships": [{"subject": "name.1", "predicate": "left of", "object": "name.2"}]} '
    "with boxes in pixel coordinates. Then reason in <think></think> and give only the option "
    "letter, like (A), in <answer></answer>."
)

_BLOCK = re.compile(r"<(observe|scene|think|answer)>(.*?)</\1>", re.S)
_ANY_TAG = re.compile(r"</?(observe|scene|think|answer)>")
_ID_SUFFIX = re.compile(r"[\s._#-]*\d+$")


@dataclass
class ParsedResponse:
    format_ok: bool = False
    error: str = ""
    blocks: dict = field(default_factory=dict)
    objects: list = field(default_factory=list)  # [(id, label, (x1, y1, x2, y2))]
    relationships: list = field(default_factory=list)  # [(subject, predicate, object)]
    answer: str | None = None


def object_label(obj_id: str) -> str:
    """``"cup.1"`` -> ``"cup"``; ``"dining table_2"`` -> ``"dining table"``."""
    s = " ".join(str(obj_id).strip().lower().split())
    return _ID_SUFFIX.sub("", s) or s


def _finite_box(b) -> tuple | None:
    if not isinstance(b, (list, tuple)) or len(b) != 4:
        return None
    out = []
    for v in b:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        v = float(v)
        if not math.isfinite(v) or abs(v) > 1e7:
            return None
        out.append(v)
    if out[2] < out[0] or out[3] < out[1]:
        return None
    return tuple(out)


def parse_scene(text: str) -> tuple[list, list, str]:
    """Parse the scene JSON.  Returns (objects, relationships, error)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        return [], [], f"scene is not valid JSON: {e}"
    if not isinstance(data, dict):
        return [], [], "scene JSON must be an object"
    objs_raw = data.get("objects")
    rels_raw = data.get("relationships", data.get("relations", []))
    if not isinstance(objs_raw, list):
        return [], [], "scene needs an 'objects' list"
    if not isinstance(rels_raw, list):
        return [], [], "'relationships' must be a list"
    objects = []
    for i, o in enumerate(objs_raw):
        if not isinstance(o, dict) or not isinstance(o.get("id"), str) or not o["id"].strip():
            return [], [], f"object {i} needs a string 'id'"
        box = _finite_box(o.get("bbox"))
        if box is None:
            return [], [], f"object {i} needs 'bbox' [x1, y1, x2, y2] with x1<=x2, y1<=y2"
        objects.append((o["id"].strip(), object_label(o["id"]), box))
    rels = []
    for i, r in enumerate(rels_raw):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("subject", "predicate", "object")):
            return [], [], f"relationship {i} needs string 'subject', 'predicate', 'object'"
        rels.append((r["subject"].strip(), " ".join(r["predicate"].lower().split()), r["object"].strip()))
    return objects, rels, ""


def parse_response(text) -> ParsedResponse:
    """Parse a model response; never raises, whatever ``text`` is."""
    p = ParsedResponse()
    try:
        if not isinstance(text, str):
            p.error = f"response is {type(text).__name__}, not str"
            return p
        blocks = list(_BLOCK.finditer(text))
        names = [m.group(1) for m in blocks]
        p.blocks = {}
        for m in blocks:
            p.blocks.setdefault(m.group(1), m.group(2))
        if "answer" in p.blocks:
            p.answer = p.blocks["answer"].strip()
        if names != list(TAGS):
            p.error = f"expected blocks {list(TAGS)} in order, found {names}"
            return p
        # nothing but whitespace outside the blocks, and no stray tags inside them
        rest = _BLOCK.sub("", text)
        if rest.strip():
            p.error = "text outside the template blocks"
            return p
        if any(_ANY_TAG.search(m.group(2)) for m in blocks):
            p.error = "nested template tags"
            return p
        objects, rels, err = parse_scene(p.blocks["scene"])
        if err:
            p.error = err
            return p
        p.objects, p.relationships = objects, rels
        if not p.answer:
            p.error = "empty answer"
            return p
        p.format_ok = True
    except Exception as e:  # pragma: no cover - defensive: the parser must never take a worker down
        p.format_ok = False
        p.error = f"parser error: {type(e).__name__}: {e}"
    return p


_LETTER = re.compile(r"^\(?\s*([A-Za-z])\s*\)?(?:[\s.:)]|$)")


def normalize_answer(ans: str | None, options: list[str] | None = None) -> str | None:
    """Map an answer to an option letter when it can be ("(B)", "B.", "b) left",
    or the option text itself), else to normalised free text."""
    if ans is None:
        return None
    s = " ".join(str(ans).strip().split())
    if not s:
        return None
    m = _LETTER.match(s)
    if m and (not options or ord(m.group(1).upper()) - 65 < len(options)):
        if options is None or len(s) <= 3 or not any(s.lower() == o.lower() for o in options):
            return m.group(1).upper()
    low = s.lower().rstrip(".")
    if options:
        for i, o in enumerate(options):
            if low == " ".join(o.lower().split()):
                return "ABCDEFGH"[i]
    return low
