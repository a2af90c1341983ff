"""What every reward preset reads: the parsed ground truth, the batch item, and the rows' error texts.

Ground truths are the STVQA-7K ``answer_option_text`` strings (``<scene>{json}</scene>\\n<answer>(B) text</answer>``);
they are parsed once and cached by string, since GRPO scores n responses per ground truth. Object names are
numbered (:data:`NAME_CODES`) so exact label similarity compares integers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rewards.template import (
    answer_key,
    corners_valid,
    extract_answer,
    extract_scene_text,
    loads_json,
    object_label,
    paper_object_name,
)

ROW_FIELDS = ("total", "format", "count", "accuracy", "spatial", "error")
"""A preset's result per item is a row ``[total, format, count, accuracy, spatial, error]``."""


@dataclass(slots=True)
class GroundTruth:
    """A parsed ``answer_option_text`` ground truth."""

    answer: str = ""
    """The stripped answer, ``"(B) behind"``."""
    key: str = ""
    """The answer as accuracy compares it (stripped, lower-cased)."""
    ids: list = field(default_factory=list)
    """Object ids as written."""
    names: list = field(default_factory=list)
    """Object names by the paper's name rule."""
    codes: list = field(default_factory=list)
    """Integer codes of ``names`` (exact similarity compares codes)."""
    strict_codes: list = field(default_factory=list)
    """Integer codes of the strict preset's labels."""
    flat: list = field(default_factory=list)
    """Boxes as flat floats ``[x1, y1, x2, y2, ...]`` (pixels)."""
    relationships: list = field(default_factory=list)
    """``(subject, predicate, object)`` triples as written."""
    n_rel: int = 0
    error: str = ""
    """Why this ground truth cannot be used at all."""
    scene_error: str = ""
    """Why its scene cannot be used (the vanilla preset needs only the answer)."""
    utf8: tuple | None = None
    """``(names joined, name lengths, key)`` as UTF-8, for the Numba reader (filled on first use)."""


class _Codes(dict):
    """name -> small integer, assigned on first sight; ``names[code]`` maps back."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, key):
        v = len(self.names)
        self.names.append(key)
        self[key] = v
        return v


class _IdCodes(dict):
    """object id -> code of its name under ``rule``, computed on first sight."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def __missing__(self, key):
        v = NAME_CODES[self.rule(key)]
        if len(self) > _MAX_CACHE:
            self.clear()
        self[key] = v
        return v


_MAX_CACHE = 100_000
NAME_CODES = _Codes()
PAPER_ID_CODES = _IdCodes(paper_object_name)
_MAX_NAMES = 1_000_000
GT_CACHE: dict[str, GroundTruth] = {}
_NUMBER_TYPES = (int, float)
BIG_INT = 1 << 53
_GT_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_ground_truth(ground_truth: str) -> GroundTruth:
    """Parse (and cache by string) a ground truth ``<scene>{json}</scene>\\n<answer>(B) text</answer>``.

    Never raises: problems land in ``error`` (no answer) or ``scene_error`` (no usable scene: missing, not JSON,
    ``objects`` not a list of ``{"id": str, "bbox": 4 finite corner numbers}``, ``relationships`` not a list).
    """
    gt = GT_CACHE.get(ground_truth) if type(ground_truth) is str else None
    if gt is not None:
        return gt
    gt = _parse_ground_truth(ground_truth)
    if type(ground_truth) is str:
        if len(GT_CACHE) > _MAX_CACHE:
            GT_CACHE.clear()
        GT_CACHE[ground_truth] = gt
    return gt


def _parse_ground_truth(text) -> GroundTruth:
    gt = GroundTruth()
    if not isinstance(text, str):
        gt.error = f"ground_truth must be a string, got {type(text).__name__}"
        return gt
    if _GT_ANSWER.search(text) is None:
        gt.error = "ground_truth has no <answer>...</answer> block"
        return gt
    gt.answer = extract_answer(text)
    gt.key = answer_key(gt.answer)
    scene_text = extract_scene_text(text)
    if scene_text is None:
        gt.scene_error = "ground_truth has no <scene>...</scene> block"
        return gt
    try:
        scene = loads_json(scene_text.strip())
    except (ValueError, RecursionError) as e:
        gt.scene_error = f"ground_truth scene is not valid JSON ({type(e).__name__})"
        return gt
    if not isinstance(scene, dict):
        scene = {}
    objs = scene.get("objects")
    rels = scene.get("relationships") or []
    if not isinstance(objs, list) or not isinstance(rels, list):
        gt.scene_error = "ground_truth scene needs an 'objects' list (and 'relationships', if any, a list)"
        return gt
    for i, o in enumerate(objs):
        box = o.get("bbox") if isinstance(o, dict) else None
        if (
            not isinstance(o, dict)
            or not isinstance(o.get("id"), str)
            or not isinstance(box, list)
            or len(box) != 4
            or not all(type(v) in _NUMBER_TYPES for v in box)
            or not corners_valid(box)
        ):
            gt.scene_error = f"ground_truth object {i} needs a string 'id' and a corner 'bbox' of 4 finite numbers"
            return gt
        gt.ids.append(o["id"])
        gt.names.append(paper_object_name(o["id"]))
        gt.flat.extend(float(v) for v in box)
    gt.codes = [NAME_CODES[n] for n in gt.names]
    gt.strict_codes = [NAME_CODES[object_label(i)] for i in gt.ids]
    for r in rels:
        r = r if isinstance(r, dict) else {}
        gt.relationships.append((r.get("subject"), r.get("predicate"), r.get("object")))
    gt.n_rel = len(rels)
    return gt


def image_wh(size) -> tuple[float, float] | None:
    """(W, H) as floats when ``size`` is two positive finite numbers (not booleans or strings), else None."""
    try:
        w, h = size
        if isinstance(w, (bool, str, bytes)) or isinstance(h, (bool, str, bytes)):
            return None
        w = float(w)
        h = float(h)
    except (TypeError, ValueError, OverflowError):
        return None
    if not (0.0 < w < math.inf and 0.0 < h < math.inf):
        return None
    return w, h


ZERO = (0.0, 0.0, 0.0, 0.0, 0.0)

SAMPLE_ERROR = "cannot score: "
"""Prefix of ``RewardBreakdown.error`` when the sample itself could not be scored (unusable ground truth, missing
image size, a response that is not a string...), as opposed to a response whose format failed."""


def is_sample_error(error: str) -> bool:
    """True when ``error`` says the sample could not be scored (see :data:`SAMPLE_ERROR`)."""
    return error.startswith(SAMPLE_ERROR)


BAD_ITEM = "item must be (response, ground_truth, image_size) or a mapping with those keys"


def maybe_reset_codes() -> None:
    """Forget the name codes and parsed ground truths once they grow past :data:`_MAX_NAMES` (between batches)."""
    if len(NAME_CODES.names) > _MAX_NAMES:  # codes are only compared within a batch: start afresh between batches
        NAME_CODES.clear()
        NAME_CODES.names.clear()
        PAPER_ID_CODES.clear()
        GT_CACHE.clear()


def unpack(item):
    """``(response, ground_truth, image_size)`` of a tuple item or a mapping with those keys."""
    if isinstance(item, Mapping):
        return item.get("response"), item.get("ground_truth"), item.get("image_size")
    response, ground_truth, image_size = item
    return response, ground_truth, image_size


def sample_error_row(reason: str) -> list:
    """The all-zero row of an item that cannot be scored."""
    return [*ZERO, SAMPLE_ERROR + reason]


def size_error(size) -> str:
    """Why ``size`` is not a usable image size."""
    return f"image_size must be [W, H], two positive numbers; got {size!r:.60}"


def response_error(response) -> str:
    """Why ``response`` cannot be scored (not a string)."""
    return f"response must be a string, got {type(response).__name__}"
