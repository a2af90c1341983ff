"""The SpatialThinker response template: format checks that never raise, and answer normalisation.

A response has four blocks, each opened once (recipe section 1)::

    <observe>...</observe>
    <scene>{"objects": [{"id": "cup.1", "bbox": [x1, y1, x2, y2]}, ...],
            "relationships": [{"subject": "cup.1", "predicate": "on", "object": "table.1"}, ...]}</scene>
    <think>...</think>
    <answer>(B) option text</answer>

Three readings of it, one per reward preset:

* :func:`check_response` -- the paper's format rule (recipe section 2): each opening tag exactly once and closed
  after it, no order check, text outside the blocks allowed, the scene a non-empty JSON object whose ``objects``
  are ``{"id": "name.N", "bbox": [4 numbers]}`` with unique ids and whose ``relationships`` have string
  subject/predicate/object with id-form ends. One deliberate difference: a box that is not valid corners
  (``x1 > x2`` or ``y1 > y2``, a value that is not a finite number, a JSON boolean) fails the format.
* :func:`parse_response` -- the project's strict reading: the four blocks in order, nothing but whitespace outside
  them, no nested tags, finite corner boxes, a non-empty answer.
* :func:`vanilla_format` / :func:`vanilla_answer` -- the paper's vanilla-GRPO baseline (``<think>`` and
  ``<answer>`` only).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from itertools import chain
from operator import le

from rewards.prompt import LETTERS

try:  # optional accelerator: ~8x faster JSON decoding; every input it rejects goes to the standard library
    import orjson

    _fast_loads = orjson.loads
    _FAST_ERRORS: tuple = (orjson.JSONDecodeError, RecursionError, TypeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = json.loads
    _FAST_ERRORS = (ValueError, RecursionError)

TAGS = ("observe", "scene", "think", "answer")
"""The four blocks of the template (recipe section 1)."""

ID_PATTERN = re.compile(r"[a-zA-Z_]+\.\d+")
"""The paper's id form (full match): letters/underscores, a dot, digits. ``dining_table.1`` passes, ``cup 1`` fails."""

_TAG_TOKEN = re.compile(r"</?(?:observe|scene|think|answer)>")
_CANONICAL_TOKENS = ["<observe>", "</observe>", "<scene>", "</scene>", "<think>", "</think>", "<answer>", "</answer>"]
_IDS_JOINED = re.compile(r"(?:[a-zA-Z_]+\.\d+\n)*[a-zA-Z_]+\.\d+")
_NUMBER_TYPES = frozenset((int, float))
_NUMBER_OR_BOOL = frozenset((int, float, bool))
_STR_TYPE = frozenset((str,))
_LIST_TYPE = frozenset((list,))
_FOUR = frozenset((4,))
_TWO = frozenset((2,))
_MAX_FLOAT = 1.7976931348623157e308
_MISSING = object()

BAD_CORNERS = "bbox is not valid corners: need finite numbers (not booleans) [x1, y1, x2, y2] with x1 <= x2, y1 <= y2"
"""Format error of a scene with a box that is not valid corners (the deliberate difference from the paper)."""

_VANILLA_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_VANILLA_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_SCENE_BLOCK = re.compile(r"<scene>(.*?)</scene>", re.DOTALL)


def loads_json(text: str):
    """``json.loads`` with the standard library's results, through orjson where it gives the same answer.

    orjson rejects what the standard library accepts in a few corners (``NaN``/``Infinity`` literals, numbers
    outside the float range, lone surrogates, deep nesting); those fall back to ``json.loads``. Raises ValueError or
    RecursionError like ``json.loads``.
    """
    try:
        return _fast_loads(text)
    except _FAST_ERRORS:
        return json.loads(text)


def paper_object_name(obj_id: str) -> str:
    """Paper rule for an object's name: the id's part before the first dot, ``_`` and ``-`` as spaces, stripped,
    lower-cased (``"dining_table.1"`` -> ``"dining table"``)."""
    return obj_id.split(".", 1)[0].replace("_", " ").replace("-", " ").strip().lower()


def answer_key(answer: str) -> str:
    """Paper rule for accuracy: answers compare stripped and lower-cased (``" (B) Behind"`` -> ``"(b) behind"``)."""
    return answer.strip().lower()


def extract_answer(text: str) -> str:
    """Paper rule: the stripped text of the first ``<answer>...</answer>`` block, ``""`` if there is none."""
    m = _ANSWER_BLOCK.search(text)
    return m.group(1).strip() if m else ""


def extract_scene_text(text: str) -> str | None:
    """Paper rule: the text of the first ``<scene>...</scene>`` block, None if there is none."""
    m = _SCENE_BLOCK.search(text)
    return m.group(1) if m else None


_KNOWN_IDS: set = set()
_MAX_KNOWN_IDS = 100_000


def ids_valid(ids: list) -> bool:
    """True when every element is a string of the paper's id form ``name.N``.

    Ids already seen valid are remembered (models reuse ``cup.1``, ``table.2``...), so the common case is one
    C-level set lookup; otherwise one regex pass over all of them joined.
    """
    if not ids:
        return True
    try:
        if _KNOWN_IDS.issuperset(ids):
            return True
    except TypeError:  # an unhashable element (list, dict): not an id
        return False
    if set(map(type, ids)) != _STR_TYPE:
        return False
    joined = "\n".join(ids)
    if joined.count("\n") != len(ids) - 1 or _IDS_JOINED.fullmatch(joined) is None:
        return False
    if len(_KNOWN_IDS) > _MAX_KNOWN_IDS:
        _KNOWN_IDS.clear()
    _KNOWN_IDS.update(ids)
    return True


def corners_valid(flat: list) -> bool:
    """True when flat ``[x1, y1, x2, y2, ...]`` numbers are finite with ``x1 <= x2`` and ``y1 <= y2`` per box
    (NaN fails the comparisons, infinities and integers beyond the float range fail the bounds)."""
    if not flat:
        return True
    return (
        all(map(le, flat[0::4], flat[2::4]))
        and all(map(le, flat[1::4], flat[3::4]))
        and -_MAX_FLOAT <= min(flat)
        and max(flat) <= _MAX_FLOAT
    )


def check_scene(scene_text: str, check_corners: bool = True):
    """Paper rule for the scene block (recipe section 2), plus the corner check when ``check_corners``.

    Returns ``(error, ids, flat_boxes, n_relationships, has_objects_key)``; ``error`` is ``""`` when the scene
    passes. ``objects``/``relationships`` missing mean empty lists; ``has_objects_key`` is False when ``objects``
    is missing (the count term then pays 0). With ``check_corners=False`` a box with a boolean still fails, but
    finiteness and corner order are left to the caller (the batch scorer checks them in its Numba kernel).
    """
    text = scene_text.strip()
    try:
        scene = _fast_loads(text)  # loads_json, inlined
    except _FAST_ERRORS:
        try:
            scene = json.loads(text)
        except (ValueError, RecursionError) as e:
            return f"scene is not valid JSON ({type(e).__name__})", None, None, 0, False
    if type(scene) is not dict or not scene:
        return "scene must be a non-empty JSON object", None, None, 0, False
    objs = scene.get("objects", _MISSING)
    has_objects = objs is not _MISSING
    if not has_objects:
        objs = []
    rels = scene.get("relationships", [])
    if type(objs) is not list:
        return "scene 'objects' must be a list", None, None, 0, has_objects
    if type(rels) is not list:
        return "scene 'relationships' must be a list", None, None, 0, has_objects
    ids: list = []
    flat: list = []
    if objs:
        try:
            ids = [o["id"] for o in objs]
            boxes = [o["bbox"] for o in objs]
        except (TypeError, KeyError, IndexError):
            return "every object must be an object with keys 'id' and 'bbox'", None, None, 0, has_objects
        if set(map(len, objs)) != _TWO:
            return "objects must have exactly the keys 'id' and 'bbox'", None, None, 0, has_objects
        try:
            box_lens = set(map(len, boxes))
        except TypeError:
            box_lens = None
        # boxes of length 4 whose elements are all numbers are lists: a 4-character string or a 4-key object
        # would show up as str elements below
        if box_lens != _FOUR:
            return "every bbox must be a list of 4 numbers", None, None, 0, has_objects
        flat = list(chain.from_iterable(boxes))
        types = set(map(type, flat))
        if not types <= _NUMBER_TYPES:
            if types <= _NUMBER_OR_BOOL:  # a boolean: the paper accepts it as a number, here it is a bad box
                return BAD_CORNERS, None, None, 0, has_objects
            return "every bbox must be a list of 4 numbers", None, None, 0, has_objects
        if check_corners and not corners_valid(flat):
            return BAD_CORNERS, None, None, 0, has_objects
        if not ids_valid(ids):
            return "object ids must be strings of the form name.N", None, None, 0, has_objects
        if len(set(ids)) != len(ids):
            return "object ids must be unique", None, None, 0, has_objects
    if rels:
        try:
            subj = [r["subject"] for r in rels]
            pred = [r["predicate"] for r in rels]
            obj = [r["object"] for r in rels]
        except (TypeError, KeyError, IndexError):
            return "every relationship needs 'subject', 'predicate' and 'object'", None, None, 0, has_objects
        if set(map(type, pred)) != _STR_TYPE:
            return "relationship predicates must be strings", None, None, 0, has_objects
        if not (ids_valid(subj) and ids_valid(obj)):
            return "relationship subjects and objects must be ids of the form name.N", None, None, 0, has_objects
    return "", ids, flat, len(rels), has_objects


def check_tags(text: str) -> str:
    """Paper rule for the blocks: each opening tag exactly once, with its closing tag somewhere after it.

    Returns ``""`` when they pass, else the reason. Block order and text outside the blocks are not checked.
    """
    return _check_tag_tokens(_TAG_TOKEN.findall(text))


def _check_tag_tokens(tokens: list) -> str:
    for tag in TAGS:
        opening = f"<{tag}>"
        k = tokens.count(opening)
        if k != 1:
            return f"{opening} must occur exactly once, found {k}"
        if f"</{tag}>" not in tokens[tokens.index(opening) + 1 :]:
            return f"{opening} is never closed"
    return ""


def check_response(text: str, check_corners: bool = True):
    """Paper format rule for a whole response (see :func:`check_tags` and :func:`check_scene`).

    Returns ``(error, ids, flat_boxes, n_relationships, has_objects_key, answer)``, ``error == ""`` when the format
    passes; ``answer`` is the stripped answer block text (paper rule), or None when the format fails.
    """
    tokens = _TAG_TOKEN.findall(text)  # every template tag, in order, in one pass
    if tokens != _CANONICAL_TOKENS:
        err = _check_tag_tokens(tokens)
        if err:
            return err, None, None, 0, False, None
    # each opening tag occurs once, so its block runs to the first closing tag after it (the paper's regex)
    s = text.find("<scene>") + 7
    a = text.find("<answer>") + 8
    err, ids, flat, n_rel, has_objects = check_scene(text[s : text.find("</scene>", s)], check_corners)
    if err:
        return err, None, None, 0, has_objects, None
    return "", ids, flat, n_rel, has_objects, text[a : text.find("</answer>", a)].strip()


def vanilla_format(text: str) -> bool:
    """Vanilla-GRPO format rule of the paper: the whole response is ``<think>...</think>`` then (whitespace allowed
    between) ``<answer>...</answer>``, nothing before or after."""
    return _VANILLA_FORMAT.fullmatch(text) is not None


def vanilla_answer(text: str) -> str:
    """Vanilla-GRPO answer rule of the paper's code: the first single-line ``<answer>...</answer>`` block, else the
    whole response; stripped."""
    m = _VANILLA_ANSWER.search(text)
    return (m.group(1) if m else text).strip()


# --------------------------------------------------------------------------------------------------------------
# The project's strict reading (preset "strict")

_BLOCK = re.compile(r"<(observe|scene|think|answer)>(.*?)</\1>", re.DOTALL)
_ANY_TAG = re.compile(r"</?(observe|scene|think|answer)>")
_ID_SUFFIX = re.compile(r"[\s._#-]*\d+$")


@dataclass
class ParsedResponse:
    """A response read by the strict rules. ``objects``: ``[(id, label, (x1, y1, x2, y2))]``;
    ``relationships``: ``[(subject, predicate, object)]``."""

    format_ok: bool = False
    error: str = ""
    blocks: dict = field(default_factory=dict)
    objects: list = field(default_factory=list)
    relationships: list = field(default_factory=list)
    answer: str | None = None


def object_label(obj_id: str) -> str:
    """Strict-preset name of an id: the id without its index, ``_``/``-`` as spaces, lower-cased (``"cup.1"`` ->
    ``"cup"``; ``"Dining Table_2"`` and ``"dining_table.2"`` -> ``"dining table"``)."""
    s = " ".join(str(obj_id).replace("_", " ").replace("-", " ").strip().lower().split())
    return _ID_SUFFIX.sub("", s) or s


def _finite_box(b) -> tuple | None:
    if not isinstance(b, (list, tuple)) or len(b) != 4:
        return None
    out = []
    for v in b:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        try:
            v = float(v)
        except OverflowError:
            return None
        if not math.isfinite(v) or abs(v) > 1e7:
            return None
        out.append(v)
    if out[2] < out[0] or out[3] < out[1]:
        return None
    return tuple(out)


def parse_scene(text: str) -> tuple[list, list, str]:
    """Strict rule for the scene JSON. Returns ``(objects, relationships, error)``."""
    try:
        data = loads_json(text)
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
    """Strict template rule: the four blocks in order, only whitespace outside them, no nested tags, a valid scene
    and a non-empty answer. Never raises, whatever ``text`` is."""
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
        if _BLOCK.sub("", text).strip():
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
    except Exception as e:  # noqa: BLE001  # pragma: no cover - defensive: the parser must never take a worker down
        p.format_ok = False
        p.error = f"parser error: {type(e).__name__}: {e}"
    return p


_LETTER = re.compile(r"^\(?\s*([A-Za-z])\s*\)?(?:[\s.:)]|$)")
_OPTION = re.compile(r"^\(\s*([A-Za-z])\s*\)\s*(.*)$", re.DOTALL)


def normalize_answer(ans: str | None, options: list[str] | None = None) -> str | None:
    """Strict rule: map an answer to an option letter when it can be ("(B)", "B.", "b) left", or the option text
    itself), else to normalised free text (lower-cased, single spaces, no trailing period)."""
    if ans is None:
        return None
    s = " ".join(str(ans).strip().split())
    if not s:
        return None
    m = _LETTER.match(s)
    if (
        m
        and (not options or ord(m.group(1).upper()) - 65 < len(options))
        and (options is None or len(s) <= 3 or not any(s.lower() == o.lower() for o in options))
    ):
        return m.group(1).upper()
    low = s.lower().rstrip(".")
    if options:
        for i, o in enumerate(options):
            if low == " ".join(o.lower().split()):
                return LETTERS[i]
    return low


def split_option(answer: str) -> tuple[str, str]:
    """``"(B) behind"`` -> ``("B", "behind")``; ``("", text)`` when there is no ``(X)`` prefix."""
    m = _OPTION.match(answer.strip())
    if not m:
        return "", answer.strip()
    return m.group(1).upper(), m.group(2).strip()


def strict_answer_correct(pred: str | None, gt_answer: str) -> bool:
    """Strict (letter-tolerant) accuracy rule: the predicted option letter equals the key's (``B``, ``(B)``,
    ``b) behind``...), or, without a letter, the predicted text equals the key's option text (case, spaces and a
    trailing period ignored)."""
    letter, text = split_option(gt_answer)
    p = normalize_answer(pred)
    if p is None:
        return False
    if len(p) == 1 and p.isupper():
        return bool(letter) and p == letter
    return p == " ".join(text.lower().split()).rstrip(".")
