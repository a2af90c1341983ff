"""Ray actors: ZeRO-3 learner group on gloo, reference policy, reward
workers, weight sync through the object store, elastic rollout pool."""

import pytest
import torch

from .conftest import make_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learners(ray_local, tiny_model):
    from actors.learner import LearnerWorker

    ls = [
        LearnerWorker.options(num_cpus=0.5).remote(r, 2, tiny_model, {"micro_batch_size": 2, "lr": 5e-3, "device": "cpu"}, {"kl_beta": 0.01})
        for r in range(2)
    ]
    master = ray_local.get(ls[0].master_address.remote())
    info = ray_local.get([l.init.remote(master, 4) for l in ls])
    yield ls, info
    ray_local.get([l.shutdown.remote() for l in ls])


def _groups(ray, tiny_model, stvqa, n_groups=2, G=4):
    from actors.rollout import RolloutWorker

    w = RolloutWorker.options(num_cpus=0.25).remote("w", tiny_model, {"max_new_tokens": 10, "device": "cpu"})
    refs = []
    for i in range(n_groups):
        _, trajs = w.generate.remote([make_request(stvqa[i], i)], G)
        refs.append(trajs)
    return w, refs


def test_zero3_partitions_and_trains(ray_local, learners, tiny_model, stvqa):
    from actors.learner import ReferencePolicy
    from actors.reward_worker import RewardWorker

    ray = ray_local
    ls, info = learners
    assert all(i["zero_stage"] == 3 and i["backend"] == "gloo" for i in info)
    rollout, refs = _groups(ray, tiny_model, stvqa)
    # rewards and reference log-probs read the trajectories straight from the object store
    rw = RewardWorker.options(num_cpus=0.25).remote()
    scores = ray.get([rw.score.remote(r) for r in refs])
    assert len(scores) == 2 and all(len(s) == 4 and {"total", "format", "spatial"} <= set(s[0]) for s in scores)
    ref = ReferencePolicy.options(num_cpus=0.25).remote(tiny_model, {"device": "cpu"})
    ref_lp = [ref.compute_logprobs.remote(r) for r in refs]

    before = ray.get(ls[0].get_weights.remote()) if False else None
    w0 = [l.get_weights.remote() for l in ls]
    before, none = ray.get(w0)
    assert none is None and before is not None
    adv = [[1.0, -1.0, 0.5, -0.5], [0.0, 1.0, -1.0, 0.0]]
    stats = ray.get([ls[k].train_step.remote([refs[k]], [ref_lp[k]], [adv[k]]) for k in range(2)])
    for s in stats:
        assert s["ratio_mean"] == pytest.approx(1.0, abs=1e-4) and s["grad_norm"] > 0
    w1 = [l.get_weights.remote() for l in ls]
    after = ray.get(w1[0])
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no parameter changed after a GRPO step"
    # weight sync: rollout worker loads the learner's state dict by reference
    assert ray.get(rollout.update_weights.remote(w1[0], 1)) == 1
    assert ray.get(rollout.ready.remote())["version"] == 1


def test_checkpoint_roundtrip(ray_local, learners, tmp_path):
    ray = ray_local
    ls, _ = learners
    ray.get([l.save_checkpoint.remote(str(tmp_path), "t1") for l in ls])
    saved = ray.get([l.get_weights.remote() for l in ls])[0]
    ray.get([l.load_checkpoint.remote(str(tmp_path), "t1") for l in ls])
    loaded = ray.get([l.get_weights.remote() for l in ls])[0]
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    with pytest.raises(Exception, match="no DeepSpeed checkpoint"):
        ray.get([l.load_checkpoint.remote(str(tmp_path), "missing") for l in ls])
    ray.get([l.export_hf.remote(str(tmp_path / "hf")) for l in ls])
    from actors.model import load_policy

    m = load_policy(tmp_path / "hf")
    assert torch.equal(m.state_dict()["lm_head.weight"], saved["lm_head.weight"])


def test_elastic_pool_survives_worker_loss(ray_local, tiny_model, stvqa):
    from cluster.pool import RolloutPool

    ray = ray_local
    pool = RolloutPool(tiny_model, {"max_new_tokens": 6, "device": "cpu"}, num_cpus=0.25, min_workers=1, max_workers=3)
    pool.add_workers(2)
    assert pool.size() == 2
    groups = [[make_request(stvqa[i], i)] for i in range(4)]
    res = pool.generate(groups, 2)
    assert [r.index for r in res] == [0, 1, 2, 3]
    assert all(len(t) == 2 for t in ray.get([r.trajectories for r in res]))
    # a worker dies: its work is re-queued and the pool keeps going
    victim = next(iter(pool.workers.values()))
    ray.kill(victim.handle, no_restart=True)
    res = pool.generate(groups, 2)
    assert len(res) == 4 and pool.size() >= 1
    assert any(e[0] == "died" for e in pool.events)
    # scale up (new workers get the latest weights) and down
    assert pool.scale_to(3) == 3
    assert pool.scale_to(1) == 1
    assert pool.scale_to(10) == 3  # capped at max_workers
    pool.shutdown()


def test_control_actor(ray_local):
    from cluster.control import TrainingControl

    c = TrainingControl.remote(2)
    assert ray_local.get(c.set_rollout_workers.remote(4)) == 4
    assert ray_local.get(c.desired_rollout_workers.remote()) == 4
    with pytest.raises(Exception, match=">= 1"):
        ray_local.get(c.set_rollout_workers.remote(0))
