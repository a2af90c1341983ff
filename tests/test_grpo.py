import pytest
import torch

from actors.grpo import LossConfig, collate, group_advantages, grpo_loss


def test_group_advantages():
    adv = group_advantages([1.0, 0.0, 1.0, 0.0, 0.5, 0.5], [0, 0, 0, 0, 1, 1])
    assert adv[:4] == pytest.approx([1, -1, 1, -1], abs=1e-4)
    assert adv[4:] == [0.0, 0.0]
    assert group_advantages([1.0, 3.0], [0, 0], scale=False) == [-1.0, 1.0]
    with pytest.raises(ValueError):
        group_advantages([1.0], [0, 1])


def test_loss_on_policy_is_minus_advantage():
    lp = torch.log(torch.full((2, 3), 0.5))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    loss, info = grpo_loss(lp, lp.clone(), lp.clone(), adv, mask, LossConfig(kl_beta=0.01))
    # token mean: (-1 -1 +1 +1 +1) / 5
    assert float(loss) == pytest.approx(0.2)
    assert info["kl"] == pytest.approx(0.0) and info["ratio_mean"] == pytest.approx(1.0)
    loss2, _ = grpo_loss(lp, lp.clone(), lp.clone(), adv, mask, LossConfig(token_mean=False))
    assert float(loss2) == pytest.approx(0.0)


def test_clipping_stops_gradient():
    old = torch.zeros(1, 1)
    lp = torch.full((1, 1), 0.5, requires_grad=True)  # ratio e^0.5 > 1.2
    loss, info = grpo_loss(lp, old, None, torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), LossConfig(kl_beta=0.0))
    loss.backward()
    assert lp.grad.abs().item() == 0.0 and info["clip_frac"] == 1.0


def test_kl_penalty_positive():
    lp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[-1.0, 1.0]])
    loss, info = grpo_loss(lp, lp.detach(), ref, torch.tensor([0.0]), torch.ones(1, 2, dtype=torch.bool), LossConfig(kl_beta=0.5))
    assert info["kl"] > 0 and float(loss) > 0


def test_collate_masks_response_tokens():
    trajs = [{"prompt_ids": [1, 2, 3], "response_ids": [4, 5]}, {"prompt_ids": [1], "response_ids": [6]}]
    kw, target, mask = collate(trajs, pad_id=0)
    assert kw["input_ids"].tolist() == [[1, 2, 3, 4, 5], [1, 6, 0, 0, 0]]
    assert target[mask].tolist() == [4, 5, 6]
