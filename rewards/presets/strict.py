"""The ``strict`` preset: the project's earlier, stricter reading of the template.

Blocks in order with nothing outside them, finite corner boxes (:func:`rewards.template.parse_response`),
letter-tolerant answers (``B``, ``(B)``, the option text), count terms per kind, and spatial credit only for
label-matched pairs divided by ``max(n_pred, n_gt)``; weights, gates and the total as the paper preset (the
formulas of :mod:`rewards.fast.terms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rewards.constants import MODE_STRICT
from rewards.fast.terms import paper_total, spatial_wanted
from rewards.matching import SpatialJobs, finish_spatial
from rewards.similarity import get_similarity
from rewards.template import parse_response, parse_scene, strict_answer_correct
from rewards.truth import (
    BAD_ITEM,
    NAME_CODES,
    ZERO,
    GroundTruth,
    image_wh,
    parse_ground_truth,
    response_error,
    sample_error_row,
    size_error,
    unpack,
)

if TYPE_CHECKING:
    from rewards.config import RewardConfig

NAME = "strict"


def _count_strict(n_obj: int, n_rel: int, gt: GroundTruth, cfg: RewardConfig) -> float:
    """Strict count rule: ``lambda_obj*term(objects) + lambda_rel*term(relations)``, a term being
    ``max(0, 1 - |p - g| / g)``, or 1/0 for an empty/non-empty prediction when ``g == 0``."""

    def term(p: int, g: int) -> float:
        if g == 0:
            return 1.0 if p == 0 else 0.0
        return max(0.0, 1.0 - abs(p - g) / g)

    return cfg.lambda_obj * term(n_obj, len(gt.codes)) + cfg.lambda_rel * term(n_rel, gt.n_rel)


def score(items: Sequence, cfg: RewardConfig) -> list:
    """Strict preset over a batch; returns ``[total, F, C, A, S, error]`` rows."""
    sim = get_similarity(cfg.label_similarity)
    out: list = [None] * len(items)
    jobs = SpatialJobs(sim, MODE_STRICT)
    for k, item in enumerate(items):
        try:
            response, gt_str, size = unpack(item)
        except (TypeError, ValueError):
            out[k] = sample_error_row(BAD_ITEM)
            continue
        gt = parse_ground_truth(gt_str)
        if gt.error or gt.scene_error:
            out[k] = sample_error_row(gt.error or gt.scene_error)
            continue
        wh = image_wh(size)
        if wh is None:
            out[k] = sample_error_row(size_error(size))
            continue
        if type(response) is not str:
            out[k] = sample_error_row(response_error(response))
            continue
        p = parse_response(response)
        if not p.format_ok and cfg.gate_on_format:
            out[k] = [*ZERO, p.error]
            continue
        objects, rels = p.objects, p.relationships
        scene_ok = p.format_ok
        if not p.format_ok and "scene" in p.blocks:
            objects, rels, scene_err = parse_scene(p.blocks["scene"])
            scene_ok = not scene_err
        fmt = 1.0 if p.format_ok else 0.0
        acc = 1.0 if strict_answer_correct(p.answer, gt.answer) else 0.0
        if not scene_ok:
            out[k] = [
                paper_total(fmt, 0.0, acc, cfg.w_format, cfg.w_count, cfg.w_accuracy),
                fmt,
                0.0,
                acc,
                0.0,
                p.error,
            ]
            continue
        count = _count_strict(len(objects), len(rels), gt, cfg)
        total = paper_total(fmt, count, acc, cfg.w_format, cfg.w_count, cfg.w_accuracy)
        out[k] = [total, fmt, count, acc, 0.0, p.error]
        need = spatial_wanted(acc, cfg.gate_spatial_on_accuracy)
        flat = [v for _, _, box in objects for v in box]
        codes = [NAME_CODES[label] for _, label, _ in objects]
        jobs.add(k, need, flat, codes, gt, gt.strict_codes, wh)
    finish_spatial(out, jobs, cfg)
    return out
