"""The ``vanilla`` preset: the paper's sparse baseline, ``R = vanilla_w_format*F + vanilla_w_accuracy*A`` (0.5, 0.5).

F = the whole response is ``<think>...</think><answer>...</answer>``; A = its answer, normalised, equals the ground
truth's. No scene, no gating, no image size needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rewards.template import answer_key, vanilla_answer, vanilla_format
from rewards.truth import BAD_ITEM, parse_ground_truth, response_error, sample_error_row, unpack

if TYPE_CHECKING:
    from rewards.config import RewardConfig

NAME = "vanilla"


def score(items: Sequence, cfg: RewardConfig) -> list:
    """Vanilla preset: ``vanilla_w_format*F + vanilla_w_accuracy*A``, no gating, no image size needed."""
    out: list = []
    for item in items:
        try:
            response, gt_str, _ = unpack(item)
        except (TypeError, ValueError):
            out.append(sample_error_row(BAD_ITEM))
            continue
        gt = parse_ground_truth(gt_str)
        if gt.error:
            out.append(sample_error_row(gt.error))
            continue
        if type(response) is not str:
            out.append(sample_error_row(response_error(response)))
            continue
        fmt = 1.0 if vanilla_format(response) else 0.0
        acc = 1.0 if answer_key(vanilla_answer(response)) == gt.key else 0.0
        err = "" if fmt else "response is not exactly <think>...</think><answer>...</answer>"
        out.append([cfg.vanilla_w_format * fmt + cfg.vanilla_w_accuracy * acc, fmt, 0.0, acc, 0.0, err])
    return out


_logged_errors: set = set()
