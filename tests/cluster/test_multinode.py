"""Learner and rollout worker on two different Ray nodes (Ray's multi-node test cluster: two raylets, two object
stores on one machine), so trajectories and weights cross object stores as on a real cluster."""

import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from actors.grpo import LossSettings
from actors.learner import BatchPlan, LearnerGroup
from actors.rollout import RolloutWorker
from actors.settings import LearnerSettings

from ..conftest import ROOT, demo, make_requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"learner_node": 1}, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2, resources={"rollout_node": 1})
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu"}})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def node_of(actor) -> str:
    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_weights_and_trajectories_cross_nodes(two_nodes, tiny_model, stvqa):
    worker = RolloutWorker.options(num_cpus=0.5, resources={"rollout_node": 0.1}).remote(
        "w", tiny_model, demo("rollout", engine="hf", max_new_tokens=8, device="cpu"), "float32", 0
    )
    learners = LearnerGroup(
        tiny_model,
        LearnerSettings(num_workers=1, micro_batch_size=2, lr=1e-2, device="cpu"),
        LossSettings(),
        BatchPlan(groups_per_step=2, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
        actor_options={"resources": {"learner_node": 0.1}},
    )
    try:
        assert node_of(worker) != node_of(learners.ranks[0])
        refs = worker.generate.options(num_returns=3).remote(make_requests(stvqa, 2), 2)
        learners.prepare(refs[1:], None, use_engine_logprobs=False)  # the rank pulls the groups across nodes
        learners.update([[1.0, -1.0], [-1.0, 1.0]])
        weights = learners.weights()
        assert ray.get(worker.update_weights.remote(weights, 1)) == 1  # the worker pulls the weights across nodes
        name = "lm_head.weight"
        synced = ray.get(worker.__ray_call__.remote(lambda self: self.engine.model.state_dict()[name].clone()))
        assert torch.equal(synced, ray.get(weights)[name])
    finally:
        learners.shutdown()
        ray.kill(worker)
