"""Tests of actors/grpo.py against an independent re-derivation.

The reference functions below are plain per-element Python (``math``), written from the formulas (PPO
clip + clip-higher + dual clip, Schulman's k1/k2/k3 KL estimators, verl's aggregation modes) without
calling the module's helpers.  Values and gradients of the module (torch.autograd) are compared with
the reference values and their hand-derived analytic gradients, in float64.
"""

import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from actors import grpo
from actors.grpo import (
    LossSettings,
    aggregate,
    group_advantages,
    grpo_loss,
    kl_penalty,
    policy_loss,
    sequence_kl,
)

F64 = torch.float64
BETA = 0.01


# -- independent reference -----------------------------------------------------------------------------------------


def ref_advantages(groups, unbiased=True, eps=1e-6, scale=True):
    out = []
    for g in groups:
        n = len(g)
        mu = sum(g) / n
        if n == 1 or max(g) == min(g):
            out.append([0.0] * n)
            continue
        if not scale:
            out.append([x - mu for x in g])
            continue
        var = sum((x - mu) ** 2 for x in g) / ((n - 1) if unbiased else n)
        sd = math.sqrt(var)
        out.append([(x - mu) / (sd + eps) for x in g])
    return out


def ref_pg_token(lp, old, a, s):
    """Per-token PPO loss and d loss / d lp for one token."""
    x = lp - old
    if abs(x) > s.log_ratio_clamp:
        x, dx = math.copysign(s.log_ratio_clamp, x), 0.0
    else:
        dx = 1.0
    r = math.exp(x)
    dr = r * dx
    lo, hi = 1.0 - s.clip_ratio_low, 1.0 + s.clip_ratio_high
    if r < lo:
        rc, drc = lo, 0.0
    elif r > hi:
        rc, drc = hi, 0.0
    else:
        rc, drc = r, dr
    unclipped, d_unclipped = -a * r, -a * dr
    clipped, d_clipped = -a * rc, -a * drc
    if unclipped >= clipped:
        loss, dloss = unclipped, d_unclipped
    else:
        loss, dloss = clipped, d_clipped
    dual = False
    if s.dual_clip is not None and a < 0 and loss > -a * s.dual_clip:
        loss, dloss, dual = -a * s.dual_clip, 0.0, True
    info = {
        "ratio": r,
        "high": a > 0 and r > hi,
        "low": a < 0 and r < lo,
        "dual": dual,
    }
    return loss, dloss, info


def ref_kl_token(lp, rf, estimator, clamp, log_ratio_clamp):
    """Per-token KL estimate and d KL / d lp for one token."""
    if estimator in ("k1", "kl"):
        k, dk = lp - rf, 1.0
    elif estimator in ("k2", "mse"):
        k, dk = 0.5 * (lp - rf) ** 2, lp - rf
    else:
        d = rf - lp
        dd = -1.0
        if abs(d) > log_ratio_clamp:
            d, dd = math.copysign(log_ratio_clamp, d), 0.0
        k, dk = math.exp(d) - d - 1.0, (math.exp(d) - 1.0) * dd
    if clamp is not None and abs(k) > clamp:
        k, dk = math.copysign(clamp, k), 0.0
    return k, dk


def ref_weights(mask, mode):
    """w[i][t] such that aggregate(x) = sum_it w_it * x_it."""
    lengths = [sum(row) for row in mask]
    n_tok = sum(lengths)
    n_seq = sum(1 for n in lengths if n > 0)
    w = []
    for row, n in zip(mask, lengths):
        wr = []
        for m in row:
            if not m:
                wr.append(0.0)
            elif mode == "token-mean":
                wr.append(1.0 / n_tok)
            elif mode == "seq-mean-token-mean":
                wr.append(1.0 / (n * n_seq))
            else:
                wr.append(1.0 / n_seq)
        w.append(wr)
    return w


def ref_aggregate(x, mask, mode):
    if mode == "token-mean":
        vals = [v for row, mr in zip(x, mask) for v, m in zip(row, mr) if m]
        return sum(vals) / len(vals)
    per_seq = []
    for row, mr in zip(x, mask):
        vals = [v for v, m in zip(row, mr) if m]
        if not vals:
            continue
        per_seq.append(sum(vals) / len(vals) if mode == "seq-mean-token-mean" else sum(vals))
    return sum(per_seq) / len(per_seq)


def ref_grpo(lp, old, rf, adv, mask, s):
    """Loss, d loss / d lp and stats of the whole objective."""
    B, T = len(lp), len(lp[0])
    w = ref_weights(mask, s.loss_agg_mode)
    kl_in_loss = rf is not None and s.kl_in == "loss" and s.kl_beta > 0
    per_tok = [[0.0] * T for _ in range(B)]
    pg_tok = [[0.0] * T for _ in range(B)]
    kl_tok = [[0.0] * T for _ in range(B)]
    grad = [[0.0] * T for _ in range(B)]
    counts = {"high": 0, "low": 0, "dual": 0}
    ratios = []
    for i in range(B):
        for t in range(T):
            if not mask[i][t]:
                continue
            a = adv[i] if not isinstance(adv[i], list) else adv[i][t]
            pg, dpg, info = ref_pg_token(lp[i][t], old[i][t], a, s)
            ratios.append(info["ratio"])
            for key in counts:
                counts[key] += int(info[key])
            pg_tok[i][t] = pg
            total, dtotal = pg, dpg
            if rf is not None:
                k, dk = ref_kl_token(lp[i][t], rf[i][t], s.kl_estimator, s.kl_clamp, s.log_ratio_clamp)
                kl_tok[i][t] = k
                if kl_in_loss:
                    total, dtotal = total + s.kl_beta * k, dtotal + s.kl_beta * dk
            per_tok[i][t] = total
            grad[i][t] = w[i][t] * dtotal
    n = len(ratios)
    stats = {
        "clip_frac_high": counts["high"] / n,
        "clip_frac_low": counts["low"] / n,
        "clip_frac": (counts["high"] + counts["low"]) / n,
        "dual_clip_frac": counts["dual"] / n,
        "ratio_mean": sum(ratios) / n,
        "ratio_max": max(ratios),
        "pg_loss": ref_aggregate(pg_tok, mask, s.loss_agg_mode),
        "kl": ref_aggregate(kl_tok, mask, s.loss_agg_mode) if rf is not None else 0.0,
    }
    loss = ref_aggregate(per_tok, mask, s.loss_agg_mode)
    stats["loss"] = loss
    return loss, grad, stats


# -- data ----------------------------------------------------------------------------------------------------------


def make_batch(seed=0, B=5, T=7, garbage=-1000.0):
    """Random padded batch; row 3 has no response token; padding holds ``garbage``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((B, T), dtype=bool)
    for i in range(B):
        if i == 3:
            continue
        start = int(rng.integers(0, 3))
        end = int(rng.integers(start + 1, T + 1))
        mask[i, start:end] = True
    logp = -rng.uniform(0.05, 3.0, size=(B, T))
    old = logp + rng.uniform(-1.6, 1.6, size=(B, T))  # ratios in [0.2, 5]: both clips and the dual clip
    ref = logp + rng.uniform(-2.5, 2.5, size=(B, T))
    adv = rng.normal(size=B)
    logp[~mask] = garbage
    old[~mask] = 0.0
    ref[~mask] = 0.0
    return logp, old, ref, adv, mask


def to_lists(*arrays):
    return [a.tolist() for a in arrays]


SETTING_GRID = [
    dict(zip(("loss_agg_mode", "kl_estimator", "dual_clip", "kl_clamp", "kl_in", "log_ratio_clamp"), combo))
    for combo in itertools.product(
        ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"],
        ["k1", "k2", "k3"],
        [3.0, None],
        [10.0, 0.3, None],
        ["loss", "reward"],
        [20.0, 1.2],
    )
]


def _id(kw):
    return "-".join(str(v) for v in kw.values())


# -- LossSettings --------------------------------------------------------------------------------------------------


def test_settings_defaults_are_the_paper_recipe():
    s = LossSettings()
    assert (s.clip_ratio_low, s.clip_ratio_high, s.dual_clip) == (0.2, 0.3, 3.0)
    assert (s.kl_beta, s.kl_estimator, s.kl_clamp, s.kl_in) == (0.01, "k3", 10.0, "loss")
    assert (s.loss_agg_mode, s.log_ratio_clamp) == ("token-mean", 20.0)


def test_every_settings_field_has_a_default_and_a_docstring():
    tree = ast.parse(Path(grpo.__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LossSettings")
    body = cls.body
    fields = [(i, n) for i, n in enumerate(body) if isinstance(n, ast.AnnAssign)]
    assert len(fields) == 9
    for i, node in fields:
        assert node.value is not None, node.target.id
        doc = body[i + 1]
        assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("k1", "k1"),
        ("kl", "k1"),
        ("k2", "k2"),
        ("mse", "k2"),
        ("k3", "k3"),
        ("low_var_kl", "k3"),
        ("LOW_VAR_KL", "k3"),
    ],
)
def test_settings_normalise_kl_aliases(alias, canonical):
    assert LossSettings(kl_estimator=alias).kl_estimator == canonical


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("clip_ratio_low", 1.0, "algo.clip_ratio_low must be in [0, 1), got 1.0"),
        ("clip_ratio_low", -0.1, "algo.clip_ratio_low must be in [0, 1), got -0.1"),
        ("clip_ratio_low", "0.2", "algo.clip_ratio_low must be in [0, 1), got '0.2'"),
        ("clip_ratio_high", -0.3, "algo.clip_ratio_high must be >= 0, got -0.3"),
        ("clip_ratio_high", float("nan"), "algo.clip_ratio_high must be >= 0, got nan"),
        ("dual_clip", 0.5, "algo.dual_clip must be > 1 or null, got 0.5"),
        ("dual_clip", 1.0, "algo.dual_clip must be > 1 or null, got 1.0"),
        ("dual_clip", True, "algo.dual_clip must be > 1 or null, got True"),
        ("kl_beta", -0.01, "algo.kl_beta must be >= 0, got -0.01"),
        (
            "kl_estimator",
            "k4",
            "algo.kl_estimator must be one of ['k1', 'k2', 'k3', 'kl', 'low_var_kl', 'mse'], got 'k4'",
        ),
        ("kl_clamp", 0.0, "algo.kl_clamp must be > 0 or null, got 0.0"),
        ("kl_in", "advantage", "algo.kl_in must be one of ['loss', 'reward'], got 'advantage'"),
        ("loss_agg_mode", "token-sum", "algo.loss_agg_mode must be one of"),
        ("log_ratio_clamp", 0.0, "algo.log_ratio_clamp must be > 0, got 0.0"),
        ("log_ratio_clamp", float("inf"), "algo.log_ratio_clamp must be > 0, got inf"),
    ],
)
def test_settings_validation_messages(field, value, message):
    with pytest.raises(ValueError) as err:
        LossSettings(**{field: value})
    assert str(err.value).startswith(message)


def test_settings_accept_null_options_and_ints():
    s = LossSettings(dual_clip=None, kl_clamp=None, kl_beta=0, clip_ratio_high=0)
    assert s.dual_clip is None and s.kl_clamp is None


# -- group_advantages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages_match_reference(unbiased, scale):
    rng = np.random.default_rng(1)
    groups = rng.uniform(0, 2, size=(6, 8)).round(2).tolist()
    groups[2] = [0.7] * 8  # no spread
    got = group_advantages(groups, unbiased=unbiased, scale=scale)
    assert got.dtype == torch.float32 and got.shape == (6, 8)
    want = ref_advantages(groups, unbiased=unbiased, scale=scale)
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=1e-6, atol=1e-6)
    assert torch.equal(got[2], torch.zeros(8))
    # tensor input gives the same result
    assert torch.equal(group_advantages(torch.tensor(groups, dtype=F64), unbiased=unbiased, scale=scale), got)


def test_unbiased_vs_biased_std_factor():
    g = [[1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 1.0]]
    unb = group_advantages(g, unbiased=True, eps=0.0).double()
    bia = group_advantages(g, unbiased=False, eps=0.0).double()
    factor = bia / unb
    np.testing.assert_allclose(factor.numpy(), math.sqrt(8 / 7), rtol=1e-6)
    assert math.sqrt(8 / 7) == pytest.approx(1.069, abs=5e-4)
    # the +-1 group of size 8: unbiased std sqrt(2/7) -> 0.9354, biased 0.5 -> 1.0
    alt = [[1.0, 0.0] * 4]
    assert group_advantages(alt)[0, 0].item() == pytest.approx(0.5 / math.sqrt(2 / 7), rel=1e-5)
    assert group_advantages(alt, unbiased=False)[0, 0].item() == pytest.approx(1.0, rel=1e-5)


def test_group_advantages_exact_zeros_without_spread():
    # 0.1 + 0.2 is not representable exactly: a mean-based test could leave tiny / eps residues
    groups = [[0.1 + 0.2] * 8, [0.1] * 8, [1e6 + 0.1] * 8, [0.0] * 8]
    for unbiased, scale in itertools.product([True, False], repeat=2):
        got = group_advantages(groups, unbiased=unbiased, scale=scale)
        assert torch.equal(got, torch.zeros(4, 8))


def test_group_advantages_single_response_groups_are_zero():
    for unbiased in (True, False):
        got = group_advantages([[1.0], [0.0], [0.3]], unbiased=unbiased)
        assert torch.equal(got, torch.zeros(3, 1)) and not torch.isnan(got).any()
    assert group_advantages([]).shape == (0, 0)


def test_group_advantages_input_errors():
    with pytest.raises(ValueError, match="rectangular"):
        group_advantages([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match=r"\[G, n\]"):
        group_advantages(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        group_advantages([[1.0, float("nan")]])


# -- policy_loss: hand cases ---------------------------------------------------------------------------------------


def _one_token(ratio, adv, settings):
    lp = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=F64)
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = grpo_loss(lp, old, None, torch.tensor([adv], dtype=F64), mask, settings)
    loss.backward()
    return loss.item(), lp.grad.item(), stats


def test_dual_clip_caps_negative_advantage_at_ratio_5():
    loss, grad, stats = _one_token(5.0, -1.0, LossSettings())
    assert loss == pytest.approx(3.0) and grad == 0.0
    assert stats["dual_clip_frac"] == 1.0 and stats["clip_frac"] == 0.0
    assert stats["ratio_mean"] == pytest.approx(5.0) and stats["ratio_max"] == pytest.approx(5.0)
    # without dual clip: max(-A r, -A clip(r)) = max(5, 1.3) = 5, gradient -A r = 5
    loss, grad, stats = _one_token(5.0, -1.0, LossSettings(dual_clip=None))
    assert loss == pytest.approx(5.0) and grad == pytest.approx(5.0)
    assert stats["dual_clip_frac"] == 0.0


@pytest.mark.parametrize(
    "ratio, adv, loss, grad, stat",
    [
        (5.0, 1.0, -1.3, 0.0, "clip_frac_high"),  # clip-higher: 1 + 0.3
        (1.25, 1.0, -1.25, -1.25, None),  # inside [0.8, 1.3]: unclipped
        (0.5, -1.0, 0.8, 0.0, "clip_frac_low"),  # 1 - 0.2
        (0.5, 1.0, -0.5, -0.5, None),  # A > 0, small ratio: never clipped
        (2.0, -1.0, 2.0, 2.0, None),  # A < 0, 1.3 < r < c: unclipped
        (1.0, 0.0, 0.0, 0.0, None),
    ],
)
def test_policy_loss_hand_cases(ratio, adv, loss, grad, stat):
    got_loss, got_grad, stats = _one_token(ratio, adv, LossSettings())
    assert got_loss == pytest.approx(loss) and got_grad == pytest.approx(grad, abs=1e-12)
    for key in ("clip_frac_high", "clip_frac_low", "dual_clip_frac"):
        assert stats[key] == (1.0 if key == stat else 0.0)


def test_on_policy_loss_is_minus_advantage():
    lp = torch.log(torch.full((2, 3), 0.5, dtype=F64))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0], dtype=F64)
    loss, stats = grpo_loss(lp, lp.clone(), lp.clone(), adv, mask, LossSettings())
    assert loss.item() == pytest.approx((-1 - 1 + 1 + 1 + 1) / 5)
    assert stats["kl"] == 0.0 and stats["ratio_mean"] == 1.0
    loss, _ = grpo_loss(lp, lp.clone(), lp.clone(), adv, mask, LossSettings(loss_agg_mode="seq-mean-token-mean"))
    assert loss.item() == pytest.approx(0.0)


def test_token_level_advantages_and_shape_errors():
    logp, old, ref, adv, mask = make_batch(seed=4)
    tok_adv = np.repeat(adv[:, None], logp.shape[1], axis=1)
    a = grpo_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(ref), torch.tensor(adv), torch.tensor(mask))
    b = grpo_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(ref), torch.tensor(tok_adv), torch.tensor(mask))
    assert a[0].item() == b[0].item()
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.tensor(logp), torch.tensor(old), torch.zeros(2), torch.tensor(mask))
    with pytest.raises(ValueError, match="old_logp"):
        policy_loss(torch.tensor(logp), torch.tensor(old)[:, :3], torch.tensor(adv), torch.tensor(mask))


# -- KL ------------------------------------------------------------------------------------------------------------


def _kl_grad(gap, settings):
    """d loss / d logp of beta * k3 for one token whose reference log-prob is ``gap`` above the policy's."""
    lp = torch.tensor([[-25.0]], dtype=F64, requires_grad=True)
    ref = torch.tensor([[-25.0 + gap]], dtype=F64)
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = grpo_loss(lp, lp.detach(), ref, torch.zeros(1, dtype=F64), mask, settings)
    loss.backward()
    return loss.item(), lp.grad.item(), stats


def test_k3_gradient_explodes_without_clamps():
    raw = LossSettings(kl_clamp=None, log_ratio_clamp=50.0)
    loss, grad, _ = _kl_grad(10.0, raw)
    assert grad == pytest.approx(-BETA * (math.exp(10) - 1)) and grad == pytest.approx(-220.25, abs=0.01)
    assert loss == pytest.approx(BETA * (math.exp(10) - 11))
    _, grad, _ = _kl_grad(20.0, raw)
    assert grad == pytest.approx(-BETA * (math.exp(20) - 1)) and grad == pytest.approx(-4.85e6, rel=1e-3)


def test_k3_gradient_stays_bounded_with_clamp():
    s = LossSettings()  # kl_clamp 10, log_ratio_clamp 20
    for gap in (10.0, 20.0, 30.0):
        loss, grad, stats = _kl_grad(gap, s)
        assert grad == 0.0 and loss == pytest.approx(BETA * 10.0) and stats["kl"] == 10.0
    # below the clamp nothing changes: k3(2) = e^2 - 3 = 4.39 < 10
    loss, grad, _ = _kl_grad(2.0, s)
    assert grad == pytest.approx(-BETA * (math.exp(2) - 1)) and loss == pytest.approx(BETA * (math.exp(2) - 3))
    # the largest |gradient| is reached where k3 = 10, at d* = 2.6109: beta * (e^d* - 1) = 0.1261
    worst = max(abs(_kl_grad(g, s)[1]) for g in np.linspace(-30, 30, 601))
    assert worst <= BETA * 12.6109 + 1e-9
    # the log-ratio clamp alone also bounds it (k3 value capped at e^20 - 21, gradient 0 beyond)
    loss, grad, _ = _kl_grad(30.0, LossSettings(kl_clamp=None))
    assert grad == 0.0 and loss == pytest.approx(BETA * (math.exp(20) - 21))


@pytest.mark.parametrize("estimator", ["k1", "kl", "k2", "mse", "k3", "low_var_kl"])
@pytest.mark.parametrize("clamp", [None, 10.0, 0.3])
@pytest.mark.parametrize("log_ratio_clamp", [20.0, 1.2])
def test_kl_penalty_matches_reference(estimator, clamp, log_ratio_clamp):
    logp, _, ref, _, mask = make_batch(seed=2)
    lp = torch.tensor(logp, requires_grad=True)
    got = kl_penalty(lp, torch.tensor(ref), estimator, clamp, mask=torch.tensor(mask), log_ratio_clamp=log_ratio_clamp)
    got.sum().backward()
    for i, t in itertools.product(range(logp.shape[0]), range(logp.shape[1])):
        if not mask[i, t]:
            assert got[i, t].item() == 0.0 and lp.grad[i, t].item() == 0.0
            continue
        k, dk = ref_kl_token(logp[i, t], ref[i, t], estimator, clamp, log_ratio_clamp)
        assert got[i, t].item() == pytest.approx(k, rel=1e-12, abs=1e-12)
        assert lp.grad[i, t].item() == pytest.approx(dk, rel=1e-12, abs=1e-12)


def test_sequence_kl_matches_reference():
    logp, _, ref, _, mask = make_batch(seed=3)
    for kw in ({}, {"kl_estimator": "k1"}, {"kl_estimator": "mse", "kl_clamp": None}, {"kl_clamp": 0.3}):
        s = LossSettings(kl_in="reward", **kw)
        lp = torch.tensor(logp, requires_grad=True)
        got = sequence_kl(lp, torch.tensor(ref), torch.tensor(mask), s)
        assert got.shape == (logp.shape[0],) and not got.requires_grad
        for i in range(logp.shape[0]):
            want = sum(
                ref_kl_token(logp[i, t], ref[i, t], s.kl_estimator, s.kl_clamp, s.log_ratio_clamp)[0]
                for t in range(logp.shape[1])
                if mask[i, t]
            )
            assert got[i].item() == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert got[3].item() == 0.0  # the row with no response token


def test_kl_in_reward_keeps_kl_out_of_the_loss():
    logp, old, ref, adv, mask = make_batch(seed=5)
    args = (torch.tensor(old), torch.tensor(ref), torch.tensor(adv), torch.tensor(mask))
    lp = torch.tensor(logp, requires_grad=True)
    loss_r, stats_r = grpo_loss(lp, *args, LossSettings(kl_in="reward"))
    loss_0, stats_0 = grpo_loss(torch.tensor(logp), *args, LossSettings(kl_beta=0.0))
    loss_none, _ = grpo_loss(torch.tensor(logp), args[0], None, *args[2:], LossSettings())
    assert loss_r.item() == loss_0.item() == loss_none.item() == stats_r["pg_loss"]
    assert stats_r["kl"] == stats_0["kl"] > 0  # still reported
    loss_l, stats_l = grpo_loss(torch.tensor(logp), *args, LossSettings())
    assert loss_l.item() == pytest.approx(stats_l["pg_loss"] + BETA * stats_l["kl"], rel=1e-12)
    assert stats_l["kl"] == stats_r["kl"]


# -- aggregate -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, want",
    [
        ("token-mean", (1 + 2 + 4 + 5 + 6) / 5),  # DAPO / paper
        ("seq-mean-token-mean", ((1 + 2) / 2 + (4 + 5 + 6) / 3) / 2),  # GRPO
        ("seq-mean-token-sum", ((1 + 2) + (4 + 5 + 6)) / 2),  # Dr. GRPO style
    ],
)
def test_aggregate_hand_computed(mode, want):
    x = torch.tensor([[1.0, 2.0, float("inf")], [4.0, 5.0, 6.0], [float("nan"), 7.0, 8.0]], dtype=F64)
    x.requires_grad_(True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)  # last row: no response
    got = aggregate(x, mask, mode)
    assert got.item() == pytest.approx(want)
    got.backward()
    w = ref_weights(mask.tolist(), mode)
    np.testing.assert_allclose(x.grad.numpy(), np.array(w), rtol=1e-12)


def test_aggregate_empty_mask_is_zero_and_unknown_mode_raises():
    x = torch.ones(2, 3, dtype=F64, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for mode in grpo.LOSS_AGG_MODES:
        out = aggregate(x, mask, mode)
        assert out.item() == 0.0
        out.backward()
        assert torch.equal(x.grad, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="loss_agg_mode"):
        aggregate(x, mask, "token-sum")


# -- whole objective vs reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", SETTING_GRID, ids=_id)
def test_grpo_loss_matches_reference(kw):
    s = LossSettings(**kw)
    logp, old, ref, adv, mask = make_batch(seed=7)
    lp = torch.tensor(logp, requires_grad=True)
    loss, stats = grpo_loss(lp, torch.tensor(old), torch.tensor(ref), torch.tensor(adv), torch.tensor(mask), s)
    loss.backward()
    want_loss, want_grad, want_stats = ref_grpo(*to_lists(logp, old, ref, adv, mask), s)
    assert loss.item() == pytest.approx(want_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(lp.grad.numpy(), np.array(want_grad), rtol=1e-10, atol=1e-12)
    assert stats.keys() == want_stats.keys()
    for key, value in want_stats.items():
        assert stats[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_reference_grid_exercises_every_branch():
    """Guard against a vacuous comparison: the random batch hits every clip branch."""
    logp, old, ref, adv, mask = make_batch(seed=7)
    _, _, stats = ref_grpo(*to_lists(logp, old, ref, adv, mask), LossSettings())
    assert stats["clip_frac_high"] > 0 and stats["clip_frac_low"] > 0 and stats["dual_clip_frac"] > 0
    assert stats["clip_frac"] < 1
    kl_clamped = sum(
        abs(ref_kl_token(logp[i, t], ref[i, t], "k3", None, 20.0)[0]) > 0.3 for i, t in zip(*np.nonzero(mask))
    )
    assert 0 < kl_clamped < mask.sum()
    assert np.abs(old - logp)[mask].max() > 1.2 and np.abs(ref - logp)[mask].max() > 1.2


def test_grpo_loss_without_reference():
    logp, old, _, adv, mask = make_batch(seed=8)
    s = LossSettings()
    lp = torch.tensor(logp, requires_grad=True)
    loss, stats = grpo_loss(lp, torch.tensor(old), None, torch.tensor(adv), torch.tensor(mask), s)
    loss.backward()
    want_loss, want_grad, want_stats = ref_grpo(*to_lists(logp, old), None, adv.tolist(), mask.tolist(), s)
    assert loss.item() == pytest.approx(want_loss, rel=1e-12) and stats["kl"] == 0.0
    np.testing.assert_allclose(lp.grad.numpy(), np.array(want_grad), rtol=1e-10, atol=1e-12)
    for key, value in want_stats.items():
        assert stats[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# -- padding garbage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("clamps", [True, False], ids=["default-clamps", "no-clamps"])
def test_masked_garbage_cannot_make_loss_or_grad_nonfinite(mode, estimator, dtype, clamps):
    s = LossSettings(loss_agg_mode=mode, kl_estimator=estimator)
    if not clamps:  # without the clamps' safety net only the torch.where before exp protects
        s = LossSettings(loss_agg_mode=mode, kl_estimator=estimator, kl_clamp=None, log_ratio_clamp=1e4)
    clean = make_batch(seed=9, garbage=0.0)
    logp, old, ref, adv, mask = make_batch(seed=9, garbage=-1000.0)
    old[~mask] = -3000.0  # unmasked, exp(logp - old) = exp(2000) = inf and 0 * inf = nan in the backward pass
    ref[~mask] = 1000.0  # likewise exp(ref - logp) = exp(2000) for k3
    tok_adv = np.repeat(adv[:, None], logp.shape[1], axis=1)
    tok_adv[~mask] = np.inf
    results = []
    for lp_np, old_np, ref_np, a_np in ((logp, old, ref, tok_adv), (clean[0], clean[1], clean[2], clean[3])):
        lp = torch.tensor(lp_np, dtype=dtype, requires_grad=True)
        args = [torch.tensor(x, dtype=dtype) for x in (old_np, ref_np, a_np)]
        loss, stats = grpo_loss(lp, args[0], args[1], args[2], torch.tensor(mask), s)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
        assert all(math.isfinite(v) for v in stats.values())
        assert torch.equal(lp.grad[torch.tensor(~mask)], torch.zeros(int((~mask).sum()), dtype=dtype))
        results.append((loss.item(), lp.grad.clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])


def test_masked_nan_in_rollout_logprobs_is_ignored():
    logp, old, ref, adv, mask = make_batch(seed=10)
    old[~mask] = np.nan
    ref[~mask] = np.nan
    lp = torch.tensor(logp, requires_grad=True)
    loss, stats = grpo_loss(lp, torch.tensor(old), torch.tensor(ref), torch.tensor(adv), torch.tensor(mask))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all() and math.isfinite(stats["kl"])
    assert math.isfinite(sequence_kl(lp, torch.tensor(ref), torch.tensor(mask)).sum().item())
