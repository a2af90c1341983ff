"""The SpatialThinker reward (recipe section 2): batched scoring behind a never-raising API.

    R = F * (w_format + w_count*C + w_accuracy*A + w_spatial*A*S)      (0.1, 0.2, 0.5, 0.2)

Three presets, one module each under :mod:`rewards.presets` (the rules of each are in its module docstring):
``spatialthinker`` (the default, the paper's public code rule for rule), ``strict`` (the project's stricter
reading) and ``vanilla`` (the paper's sparse ``<think>``/``<answer>`` baseline). :func:`score_rows` picks the
preset of the config and guards it; :func:`score_batch` and :func:`compute_reward` wrap the rows in
:class:`RewardBreakdown`. Ground truths are parsed once per string (:mod:`rewards.truth`); the spatial matching of a
whole batch runs in one Numba call, and under the paper preset with exact similarity the common ASCII response is
read and scored end to end by the Numba reader of :mod:`rewards.fast.scan` (the two paths agree bit for bit:
``tests/rewards/test_scan.py``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence

from rewards.config import PRESETS, RewardBreakdown, RewardConfig
from rewards.fast import kernels, terms
from rewards.presets import SCORERS, spatialthinker
from rewards.similarity import SimilarityUnavailable
from rewards.truth import (
    SAMPLE_ERROR,
    ZERO,
    GroundTruth,
    is_sample_error,
    maybe_reset_codes,
    parse_ground_truth,
)

log = logging.getLogger(__name__)

INTERNAL_ERROR = SAMPLE_ERROR + "internal error: "
"""Prefix of ``RewardBreakdown.error`` when the scorer itself failed on an item (a bug, logged once): the item
gets zeros so a worker is never taken down, and the tests fail on it."""

_DEFAULT_CFG = RewardConfig()
_logged_errors: set = set()


def score_rows(items: Sequence, cfg: RewardConfig | None = None) -> list:
    """Score a batch and return plain rows ``[total, format, count, accuracy, spatial, error]`` (the fast path
    under :func:`score_batch` and the CLI). Never raises: a batch that fails unexpectedly is rescored item by item,
    and an item that still fails gets zeros and an error starting with :data:`INTERNAL_ERROR`."""
    cfg = cfg if cfg is not None else _DEFAULT_CFG
    if not isinstance(items, Sequence):
        items = list(items)
    try:
        maybe_reset_codes()
        return SCORERS[cfg.preset](items, cfg)
    except SimilarityUnavailable as e:
        return [[*ZERO, SAMPLE_ERROR + str(e)] for _ in items]
    except Exception as e:  # noqa: BLE001 - the reward must never take a worker down
        if len(items) <= 1:
            _log_once(e)
            return [[*ZERO, f"{INTERNAL_ERROR}{type(e).__name__}: {e}"] for _ in items]
        return [score_rows([item], cfg)[0] for item in items]


def _log_once(e: Exception) -> None:
    key = f"{type(e).__name__}: {e}"[:200]
    if key not in _logged_errors and len(_logged_errors) < 20:
        _logged_errors.add(key)
        log.error("reward: unexpected error (scored 0): %s", key, exc_info=e)


def score_batch(items: Iterable, cfg: RewardConfig | None = None) -> list[RewardBreakdown]:
    """Score many responses: ``items`` are ``(response, ground_truth, image_size)`` tuples or mappings with those
    keys. Ground truths are parsed once per distinct string and the spatial matchings of the whole batch run in one
    Numba call. Never raises."""
    return [RewardBreakdown(*row) for row in score_rows(items if isinstance(items, Sequence) else list(items), cfg)]


def compute_reward(
    response: str,
    ground_truth: str,
    image_size: tuple[int, int] | None,
    cfg: RewardConfig | None = None,
) -> RewardBreakdown:
    """Score one response against one STVQA ground truth (``answer_option_text``) for an image of the stated
    ``image_size`` (W, H). Never raises: malformed responses score 0 with the reason in ``error``; a sample that
    cannot be scored (bad ground truth, missing image size under a preset that needs it) gets zeros and an error."""
    return RewardBreakdown(*score_rows([(response, ground_truth, image_size)], cfg)[0])


def paper_fast_available(cfg: RewardConfig) -> bool:
    """True when :func:`score_decoded` applies: the paper preset with exact label similarity."""
    return spatialthinker.fast_available(cfg)


score_decoded = spatialthinker.score_decoded


def warmup() -> None:
    """Compile (or load from Numba's on-disk cache) every kernel and the Numba reader once, so the first batch is
    not slow; the reader through its caller, so the argument types are the ones batches use."""
    kernels.warmup()
    terms.warmup()
    gt = '<scene>{"objects": [{"id": "cup.1", "bbox": [1, 2, 30, 40]}]}</scene>\n<answer>(A) x</answer>'
    score_rows([(perfect_response(gt), gt, [64, 48])])


# --------------------------------------------------------------------------------------------------------------
# Helpers for warm starts and tests

_NON_ID = re.compile(r"[^A-Za-z_]+")
_INDEX = re.compile(r"\d+")


def _template_id(raw_id, index: int, used: set) -> str:
    """A ground-truth id rewritten into the paper's id form with the same name (``traffic light.1`` ->
    ``traffic_light.1``)."""
    raw = str(raw_id)
    name, _, suffix = raw.partition(".")
    name = _NON_ID.sub("_", name.strip()) or "object"
    suffix = suffix if _INDEX.fullmatch(suffix or "") else str(index + 1)
    out = f"{name}.{suffix}"
    n = index + 1
    while out in used:
        n += 1
        out = f"{name}.{n}"
    used.add(out)
    return out


def perfect_response(
    ground_truth: str,
    observe: str = "I look at the objects the question is about.",
    think: str = "The scene graph answers the question.",
) -> str:
    """A template response that restates ``ground_truth`` (scene graph and answer), for the warm start and tests.

    Ids are rewritten into the paper's ``name.N`` form with the same names (``traffic light.1`` ->
    ``traffic_light.1``), so it scores 1.0 under the default preset, up to the ``eps`` of CIoU (about 1e-7 for
    boxes of ordinary size). Raises ValueError when the ground truth has no usable answer or scene.
    """
    gt = parse_ground_truth(ground_truth)
    if gt.error or gt.scene_error:
        raise ValueError(f"perfect_response: {gt.error or gt.scene_error}")
    used: set = set()
    mapping: dict = {}
    objects = []
    for i, raw in enumerate(gt.ids):
        new = _template_id(raw, i, used)
        mapping.setdefault(raw, new)
        box = [int(v) if float(v).is_integer() and abs(v) < 2**53 else v for v in gt.flat[4 * i : 4 * i + 4]]
        objects.append({"id": new, "bbox": box})
    rels = []
    for j, (s, p, o) in enumerate(gt.relationships):
        s_id = mapping.get(s) or _template_id(s, j, set())
        o_id = mapping.get(o) or _template_id(o, j, set())
        rels.append({"subject": s_id, "predicate": str(p if p is not None else "near"), "object": o_id})
    scene = json.dumps({"objects": objects, "relationships": rels})
    return (
        f"<observe>{observe}</observe>\n<scene>{scene}</scene>\n<think>{think}</think>\n<answer>{gt.answer}</answer>"
    )


__all__ = [
    "INTERNAL_ERROR",
    "PRESETS",
    "SAMPLE_ERROR",
    "GroundTruth",
    "RewardBreakdown",
    "RewardConfig",
    "compute_reward",
    "is_sample_error",
    "parse_ground_truth",
    "perfect_response",
    "paper_fast_available",
    "score_batch",
    "score_decoded",
    "score_rows",
    "warmup",
]
