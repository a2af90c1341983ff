"""The ``spatialthinker`` preset (the default): the paper's public code, rule for rule (recipe section 2).

    R = F * (w_format + w_count*C + w_accuracy*A + w_spatial*A*S)      (0.1, 0.2, 0.5, 0.2)

Format F (:func:`rewards.template.check_response`), count C (objects and relations, lambda 0.7/0.3, relations
ignored when the ground truth has none, C = 0 without an ``objects`` key), accuracy A (stripped, lower-cased exact
match with ``"(X) option text"``) and spatial S (Hungarian matching on ``lambda_semantic*(1-sim) +
lambda_spatial*(1-CIoU01)`` over boxes normalised by the stated image size, S = sum of the matched CIoU01 over the
ground-truth objects). One deliberate difference: a predicted box that is not valid corners fails the format, where
the paper's code scores it (S outside [0, 1]) or crashes.

With exact label similarity the common ASCII response is read and scored end to end by the Numba reader of
:mod:`rewards.fast.scan`, every other response by the Python rules here. The count, gating and total formulas are
written once (:mod:`rewards.fast.terms`) and called by both; the reading itself (tags, scene JSON, answer) exists
on both sides, and ``tests/rewards/test_scan.py`` checks that the two give the same rows bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from rewards import truth
from rewards.constants import MODE_PAPER, SCAN_FALLBACK, SCAN_OK
from rewards.fast.scan import padded, paper_batch
from rewards.fast.terms import paper_count, paper_total, spatial_wanted
from rewards.matching import SpatialJobs, finish_spatial
from rewards.similarity import LabelSimilarity, get_similarity
from rewards.template import check_response, check_scene, extract_answer, extract_scene_text
from rewards.truth import (
    BAD_ITEM,
    BIG_INT,
    PAPER_ID_CODES,
    GroundTruth,
    image_wh,
    maybe_reset_codes,
    parse_ground_truth,
    response_error,
    sample_error_row,
    size_error,
    unpack,
)

if TYPE_CHECKING:
    from rewards.config import RewardConfig

NAME = "spatialthinker"


def score(items: Sequence, cfg: RewardConfig) -> list:
    """Paper preset over a batch; returns ``[total, F, C, A, S, error]`` rows.

    Items that cannot be scored get their error here. With exact label similarity the rest go to the Numba reader
    (:func:`rewards.fast.scan.paper_batch`), which scores the common ASCII response end to end in one call; whatever it
    does not take (other shapes, failed formats, non-ASCII text, other similarities) is scored by the Python rules.
    """
    sim = get_similarity(cfg.label_similarity)
    out: list = [None] * len(items)
    ready: list = []  # (item number, response, ground truth, (W, H))
    add_ready = ready.append
    gt_get = truth.GT_CACHE.get
    for k, item in enumerate(items):
        if type(item) is tuple and len(item) == 3:
            response, gt_str, size = item
        else:
            try:
                response, gt_str, size = unpack(item)
            except (TypeError, ValueError):
                out[k] = sample_error_row(BAD_ITEM)
                continue
        gt = gt_get(gt_str) if type(gt_str) is str else None
        if gt is None:
            gt = parse_ground_truth(gt_str)
        if gt.error or gt.scene_error:
            out[k] = sample_error_row(gt.error or gt.scene_error)
            continue
        if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int:
            wh = size if 0 < size[0] < BIG_INT and 0 < size[1] < BIG_INT else None  # the common [W, H]
        else:
            wh = image_wh(size)
        if wh is None:
            out[k] = sample_error_row(size_error(size))
            continue
        if type(response) is not str:
            out[k] = sample_error_row(response_error(response))
            continue
        add_ready((k, response, gt, wh))
    if sim.exact and ready:
        ready = _score_paper_fast(out, ready, cfg)
    if ready:
        _score_paper_python(out, ready, cfg, sim)
    return out


class _GtTable:
    """The distinct ground truths of a batch as the flat arrays :func:`rewards.fast.scan.paper_batch` reads."""

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
    """Score the ASCII responses of ``ready`` with :func:`rewards.fast.scan.paper_batch`; returns the entries it did
    not take (for the Python rules)."""
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
    """:func:`rewards.fast.scan.paper_batch` on responses ``buf[rstart[j]:rstart[j+1]]`` (padded uint8) against
    ``gts[gt_index[j]]`` (:class:`GroundTruth`) with image sizes ``sizes`` (K, 2) or (2K,); rows whose ground truth
    is unusable come back with status FALLBACK."""
    table = _GtTable()
    usable = np.array([not (gt.error or gt.scene_error) for gt in gts], dtype=bool)
    rows = np.array([table.row(gt) if ok else -1 for gt, ok in zip(gts, usable.tolist())], dtype=np.int64)
    if not usable.all():
        rows[~usable] = table.row(EMPTY_GT)  # a harmless row: its results are dropped below
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


def fast_available(cfg: RewardConfig) -> bool:
    """True when :func:`score_decoded` applies: this preset with exact label similarity."""
    return cfg.preset == NAME and get_similarity(cfg.label_similarity).exact


def score_decoded(responses, rstart, gt_texts: list, gt_index, sizes, cfg: RewardConfig) -> tuple:
    """Paper preset (exact similarity) on responses already decoded to ASCII bytes, without a Python object per
    response -- the scoring CLI's path. Response j is ``responses[rstart[j]:rstart[j+1]]`` (uint8, padded as
    :func:`rewards.fast.scan.padded` pads), its ground truth the ``answer_option_text`` string
    ``gt_texts[gt_index[j]]``, its image ``sizes[j]`` = (W, H).

    Returns ``(status, total, count, accuracy, spatial)`` arrays; the format term of a row with ``status == OK`` is
    1. Rows with another status (a shape the Numba reader leaves to Python, an unusable ground truth) must be scored
    with :func:`rewards.spatial.score_rows`.
    """
    maybe_reset_codes()  # before the ground truths are parsed, so the batch shares one name numbering
    return _paper_rows(responses, rstart, [parse_ground_truth(t) for t in gt_texts], gt_index, sizes, cfg)


EMPTY_GT = GroundTruth()


def _score_paper_python(out: list, ready: list, cfg: RewardConfig, sim: LabelSimilarity) -> None:
    """Paper preset by the Python rules (:func:`check_response`) for ``ready`` entries; the spatial matching of all
    of them runs in one :func:`rewards.fast.kernels.spatial_batch` call; the count, gating and total formulas
    are the compiled ones of :mod:`rewards.fast.terms`, which the Numba reader calls too."""
    jobs = SpatialJobs(sim, MODE_PAPER)
    gate_f = cfg.gate_on_format
    gate_a = cfg.gate_spatial_on_accuracy
    wf, wc, wa = cfg.w_format, cfg.w_count, cfg.w_accuracy
    lo, lr = cfg.lambda_obj, cfg.lambda_rel
    id_code = PAPER_ID_CODES.__getitem__
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
            out[k] = [paper_total(fmt, 0.0, acc, wf, wc, wa), fmt, 0.0, acc, 0.0, err]
            continue
        gt_codes = gt.codes
        count = paper_count(has_objects, len(ids), len(gt_codes), n_rel, gt.n_rel, lo, lr)
        out[k] = [paper_total(fmt, count, acc, wf, wc, wa), fmt, count, acc, 0.0, err]
        need = spatial_wanted(acc, gate_a)
        codes = list(map(id_code, ids))
        jobs.add(k, need, flat, codes, gt, gt_codes, wh)
    finish_spatial(out, jobs, cfg)


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
