"""The ZeRO-3 learner group on gloo, the reference actor and reward workers, as real Ray actors: trajectories travel
by reference, several optimizer steps per rollout batch, weight sync through the object store."""

import pytest
import torch

from actors.grpo import LossSettings
from actors.learner import BatchPlan, LearnerGroup, ReferencePolicy
from actors.model import load_policy
from actors.records import GroupLogprobs
from actors.reward_worker import RewardWorker
from actors.settings import LearnerSettings, ReferenceSettings
from rewards.spatial import RewardConfig

from ..conftest import demo, make_requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learner_group(ray_local, tiny_model):
    group = LearnerGroup(
        tiny_model,
        LearnerSettings(num_workers=2, micro_batch_size=2, lr=5e-3, device="cpu"),
        LossSettings(),
        BatchPlan(groups_per_step=4, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
    )
    yield group
    group.shutdown()


@pytest.fixture(scope="module")
def group_refs(ray_local, tiny_model, stvqa):
    from actors.rollout import RolloutWorker

    worker = RolloutWorker.options(num_cpus=0.25).remote(
        "w", tiny_model, demo("rollout", engine="hf", max_new_tokens=10, device="cpu"), "float32", 0
    )
    reqs = make_requests(stvqa, 4)
    refs = worker.generate.options(num_returns=5).remote(reqs, 2)
    yield refs[1:]
    ray_local.kill(worker)


def test_zero3_partitions_and_trains_in_minibatches(ray_local, learner_group, group_refs, tiny_model):
    ray = ray_local
    assert all(i["zero_stage"] == 3 and i["backend"] == "gloo" for i in learner_group.info)
    assert learner_group.plan.groups_per_rank == 2 and learner_group.plan.updates_per_epoch == 2
    rewarder = RewardWorker.options(num_cpus=0.25).remote(RewardConfig())
    scores = ray.get([rewarder.score.remote(r) for r in group_refs])
    assert all(len(s) == 2 and 0.0 <= s[0].total <= 1.0 for s in scores)
    reference = ReferencePolicy.options(num_cpus=0.25).remote(
        tiny_model, ReferenceSettings(device="cpu"), "float32", 1.0
    )
    ref_refs = [reference.compute_logprobs.remote(r) for r in group_refs]
    assert isinstance(ray.get(ref_refs[0]), GroupLogprobs)

    before = ray.get(learner_group.weights())
    # built under deepspeed.zero.Init, each rank loaded its partition of the checkpoint (not a fresh init)
    checkpoint = load_policy(tiny_model, "float32").state_dict()
    assert set(before) == set(checkpoint) and all(torch.equal(before[k], checkpoint[k]) for k in checkpoint)
    info = learner_group.prepare(group_refs, ref_refs, use_engine_logprobs=False)
    assert len(info.sequence_kl) == 4
    stats = learner_group.update([[1.0, -1.0], [0.5, -0.5], [-1.0, 1.0], [0.0, 0.0]])
    for s in stats:
        assert s.optimizer_steps == 2 and s.grad_norm > 0 and s.tokens > 0
        assert s.extra["micro_batches"] == 2 and 0.0 <= s.extra["padding_fraction"] < 1.0  # fixed count: 2 x 2
    after = ray.get(learner_group.weights())
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the reference stays the initial policy: its log-probs do not move
    assert torch.equal(
        ray.get(reference.compute_logprobs.remote(group_refs[0])).logprobs[0], ray.get(ref_refs[0]).logprobs[0]
    )


def test_several_updates_per_batch_move_the_ratio(ray_local, tiny_model, group_refs):
    """With prompts_per_update < prompts_per_step the second mini-batch sees updated weights: ratio != 1. Token-budget
    micro-batches (a budget below one sequence: one sequence per pass, with a warning) still take one optimizer
    step per mini-batch."""
    group = LearnerGroup(
        tiny_model,
        LearnerSettings(num_workers=1, micro_batch_size=2, lr=5e-2, device="cpu", max_tokens_per_micro_batch=100),
        LossSettings(),
        BatchPlan(groups_per_step=4, groups_per_update=1, group_size=2, ppo_epochs=2),
        "float32",
        1.0,
    )
    try:
        group.prepare(group_refs, None, use_engine_logprobs=False)
        (stats,) = group.update([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
        assert stats.optimizer_steps == 8  # 4 mini-batches x 2 epochs
        assert stats.extra["micro_batches"] == 16 and stats.extra["padding_fraction"] == 0.0  # one sequence each
        assert abs(stats.ratio_mean - 1.0) > 1e-4 or stats.ratio_max > 1.0 + 1e-4
        assert stats.clip_frac_high + stats.clip_frac_low > 0
    finally:
        group.shutdown()


def test_wrong_shard_size_is_a_clear_error(learner_group, group_refs):
    with pytest.raises(ValueError, match="trains on 4 prompt groups per step, got 3"):
        learner_group.prepare(group_refs[:3], None, use_engine_logprobs=False)
