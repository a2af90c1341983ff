"""The paper preset's count, gating and total formulas, written once (recipe section 2).

Both the Numba reader (:func:`rewards.fast.scan.paper_batch`) and the Python rules
(:mod:`rewards.presets.spatialthinker`, and the spatial credit of :mod:`rewards.presets.strict`) call these
compiled functions, so the two paths compute every term with the same operations in the same order.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def paper_count(has_objects, n_pred, n_gt, n_rel_pred, n_rel_gt, lambda_obj, lambda_rel):
    """Count term C of the paper: ``obj = max(0, 1 - |Np - Ng| / max(Ng, 1))``; C = obj when the ground truth has no
    relations, else ``lambda_obj*obj + lambda_rel*rel`` (rel alike); C = 0 when the prediction has no ``objects``."""
    if not has_objects:
        return 0.0
    c = max(0.0, 1 - abs(n_pred - n_gt) / (n_gt if n_gt else 1))
    if n_rel_gt:
        c = c * lambda_obj + max(0.0, 1 - abs(n_rel_pred - n_rel_gt) / n_rel_gt) * lambda_rel
    return c


@njit(cache=True)
def paper_total(fmt, count, acc, w_format, w_count, w_accuracy):
    """The total before the spatial term: ``w_format*F + w_count*C + w_accuracy*A``."""
    return w_format * fmt + w_count * count + w_accuracy * acc


@njit(cache=True)
def spatial_wanted(acc, gate_spatial):
    """Whether S is paid: always, or (the paper's gate) only when the answer is correct."""
    return acc == 1.0 or not gate_spatial


@njit(cache=True)
def with_spatial(total, s, acc, w_spatial, gate_spatial):
    """The total with the spatial term added: ``total + w_spatial*S*(A if gated else 1)``."""
    return total + w_spatial * s * (acc if gate_spatial else 1.0)


def warmup() -> None:
    """Compile (or load) the formulas for the argument types both paths pass (ints, floats, booleans)."""
    paper_count(True, 2, 3, 1, 1, 0.7, 0.3)
    paper_total(1.0, 0.5, 1.0, 0.1, 0.2, 0.5)
    spatial_wanted(1.0, True)
    with_spatial(0.8, 0.9, 1.0, 0.2, True)
