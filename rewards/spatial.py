"""SpatialThinker reward: format, count, accuracy and spatial (CIoU) terms,
combined lexicographically.

* format (0/1): the response follows the template (:mod:`rewards.template`).
* count: ``lambda_obj * max(0, 1 - |n_pred_obj - n_gt_obj| / n_gt_obj)
  + lambda_rel * max(0, 1 - |n_pred_rel - n_gt_rel| / n_gt_rel)``.
* accuracy (0/1): exact match of the normalised answer with the key.
* spatial: Hungarian-matched CIoU against the ground-truth objects.

Lexicographic gating: nothing but the format term is paid for a malformed
response, and the spatial term is paid only when the answer is correct, so
the policy cannot trade accuracy for box quality.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rewards.kernels import spatial_score
from rewards.template import normalize_answer, object_label, parse_response


@dataclass
class RewardConfig:
    w_format: float = 0.1
    w_count: float = 0.2
    w_accuracy: float = 0.5
    w_spatial: float = 0.2
    lambda_obj: float = 0.7
    lambda_rel: float = 0.3
    label_penalty: float = 1.0
    gate_spatial_on_accuracy: bool = True

    def __post_init__(self):
        for k, v in asdict(self).items():
            if isinstance(v, float) and (v < 0 or v != v):
                raise ValueError(f"reward config {k} must be a non-negative number, got {v}")


@dataclass
class RewardBreakdown:
    total: float
    format: float
    count: float
    accuracy: float
    spatial: float

    def as_dict(self) -> dict:
        return asdict(self)


def _count_term(n_pred: int, n_gt: int) -> float:
    if n_gt == 0:
        return 1.0 if n_pred == 0 else 0.0
    return max(0.0, 1.0 - abs(n_pred - n_gt) / n_gt)


def _boxes(seq) -> np.ndarray:
    if not seq:
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(seq, dtype=np.float64).reshape(-1, 4)


def compute_reward(response, sample: dict, cfg: RewardConfig | None = None) -> RewardBreakdown:
    """Score one response against one STVQA sample (a dataset row with
    ``answer``, ``options``, ``gt_objects``, ``gt_relationships``)."""
    cfg = cfg or RewardConfig()
    p = parse_response(response)
    options = list(sample.get("options") or [])
    key = normalize_answer(sample.get("answer"), options)
    pred = normalize_answer(p.answer, options)
    acc = 1.0 if (pred is not None and key is not None and pred == key) else 0.0
    if not p.format_ok:
        return RewardBreakdown(total=0.0, format=0.0, count=0.0, accuracy=acc, spatial=0.0)
    gt_objs = list(sample.get("gt_objects") or [])
    gt_rels = list(sample.get("gt_relationships") or [])
    count = cfg.lambda_obj * _count_term(len(p.objects), len(gt_objs)) + cfg.lambda_rel * _count_term(
        len(p.relationships), len(gt_rels)
    )
    pred_boxes = _boxes([b for _, _, b in p.objects])
    gt_boxes = _boxes([o["bbox"] for o in gt_objs])
    pl = [lab for _, lab, _ in p.objects]
    gl = [(o.get("name") or object_label(o.get("id", ""))).lower() for o in gt_objs]
    match = np.array([[1.0 if a == b else 0.0 for b in gl] for a in pl], dtype=np.float64).reshape(len(pl), len(gl))
    spatial = float(spatial_score(pred_boxes, gt_boxes, match, cfg.label_penalty))
    gate = acc if cfg.gate_spatial_on_accuracy else 1.0
    total = cfg.w_format * 1.0 + cfg.w_count * count + cfg.w_accuracy * acc + cfg.w_spatial * spatial * gate
    return RewardBreakdown(total=total, format=1.0, count=count, accuracy=acc, spatial=spatial)


def perfect_response(sample: dict, observe: str = "I look at the objects.", think: str = "Reasoning.") -> str:
    """A template response that restates a sample's ground truth (used for
    tests, benchmarks and SFT-style warm starts)."""
    import json

    def num(v):
        v = float(v)
        return int(v) if v.is_integer() else round(v, 1)

    scene = {
        "objects": [{"id": o["id"], "bbox": [num(v) for v in o["bbox"]]} for o in sample.get("gt_objects") or []],
        "relationships": [
            {"subject": r["subject"], "predicate": r["predicate"], "object": r["object"]} for r in sample.get("gt_relationships") or []
        ],
    }
    return (
        f"<observe>{observe}</observe><scene>{json.dumps(scene, separators=(',', ':'))}</scene>"
        f"<think>{think}</think><answer>({sample['answer']})</answer>"
    )
