"""``reference.colocate_with_learner``: the learner ranks hold the initial weights as a second ZeRO-3 engine (no
optimizer) and compute the reference log-probs themselves, equal to the reference actor's."""

import pytest
import torch

from actors.grpo import LossSettings
from actors.learner import BatchPlan, LearnerGroup, ReferencePolicy
from actors.settings import LearnerSettings, ReferenceSettings, RolloutSettings

from ..conftest import make_requests

pytestmark = pytest.mark.slow


def test_colocated_reference_matches_the_reference_actor_and_stays_frozen(ray_local, tiny_model, stvqa):
    from actors.rollout import RolloutWorker

    ray = ray_local
    worker = RolloutWorker.options(num_cpus=0.25).remote(
        "w", tiny_model, RolloutSettings(engine="hf", max_new_tokens=8, device="cpu"), "float32", 0
    )
    group_refs = worker.generate.options(num_returns=3).remote(make_requests(stvqa, 2), 2)[1:]
    reference = ReferencePolicy.options(num_cpus=0.25).remote(
        tiny_model, ReferenceSettings(device="cpu"), "float32", 1.0
    )
    expected = [lp for g in ray.get([reference.compute_logprobs.remote(r) for r in group_refs]) for lp in g.logprobs]
    group = LearnerGroup(
        tiny_model,
        LearnerSettings(num_workers=2, micro_batch_size=2, lr=5e-2, device="cpu"),
        LossSettings(kl_beta=0.1),
        BatchPlan(groups_per_step=2, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
        colocate_reference=True,
    )

    def refs_on_ranks():
        return [t for r in group.ranks for t in ray.get(r.__ray_call__.remote(lambda self: list(self.ref)))]

    try:
        # ZeRO-3 parameter partitioning only: no optimizer, no optimizer state
        kinds = ray.get(
            [r.__ray_call__.remote(lambda self: type(self.reference.optimizer).__name__) for r in group.ranks]
        )
        assert kinds == ["DeepSpeedZeRoOffload", "DeepSpeedZeRoOffload"]
        group.prepare(group_refs, None, use_engine_logprobs=False)
        first = refs_on_ranks()
        assert len(first) == len(expected) == 4
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(first, expected))
        (stats, _) = group.update([[1.0, -1.0], [-1.0, 1.0]])
        assert stats.optimizer_steps == 1
        group.prepare(group_refs, None, use_engine_logprobs=False)  # after the update the reference has not moved
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(refs_on_ranks(), expected))
        (stats, _) = group.update([[1.0, -1.0], [-1.0, 1.0]])
        assert stats.kl > 0  # the policy moved away from the colocated reference
    finally:
        group.shutdown()
        ray.kill(reference)
        ray.kill(worker)
