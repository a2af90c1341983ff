"""The staleness-bounded pipeline (cluster/pipeline.py), dynamic sampling, scoring as chunks land and the timeline:
real Ray actors, real rollout workers and learner ranks, real processes killed."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from cluster.config import ConfigError, load_config
from cluster.timeline import Timeline

from ..conftest import ROOT, demo_config, make_requests
from .test_faults import metric_steps, run_train, sigterm_after_steps

STALE = ["--set", "algo.max_staleness=1"]


def test_staleness_needs_the_engines_logprobs():
    with pytest.raises(ConfigError, match=r"algo.max_staleness=1 needs rollout.use_engine_logprobs=true"):
        load_config(None, ["algo.max_staleness=1", "rollout.use_engine_logprobs=false"])
    with pytest.raises(ConfigError, match=r"algo.max_staleness must be an integer >= 0"):
        load_config(None, ["algo.max_staleness=-1"])
    with pytest.raises(ConfigError, match=r"algo.filter_min_std must be a finite number >= 0"):
        load_config(None, ["algo.filter_min_std=-0.1"])
    assert load_config().algo.max_staleness == 0 and load_config().algo.filter_groups is False


def test_timeline_busy_fractions_and_chrome_trace(tmp_path):
    tl = Timeline(tmp_path / "timeline.json")
    tl.add("rollout", "rollout-0", "generate", 100.0, 104.0, 1)
    tl.add("rollout", "rollout-0", "generate", 103.0, 106.0, 1)  # overlaps the first: counted once
    tl.add("rollout", "rollout-1", "generate", 108.0, 112.0, 1)  # half inside the window
    tl.add("learner", "ranks", "update", 101.0, 103.0, 1)
    busy = tl.busy(100.0, 110.0, {"rollout": 2, "learner": 1, "reward": 1})
    assert busy["pool/rollout_busy"] == pytest.approx((6 + 2) / 20)
    assert busy["pool/learner_busy"] == pytest.approx(0.2) and busy["pool/reward_busy"] == 0.0
    assert "pool/reference_busy" not in busy  # no such pool in this run
    tl.write()
    trace = json.loads((tmp_path / "timeline.json").read_text())["traceEvents"]
    spans = [e for e in trace if e["ph"] == "X"]
    assert len(spans) == 4 and all(isinstance(e["ts"], int) and e["dur"] > 0 for e in spans)
    names = {e["args"]["name"] for e in trace if e["ph"] == "M"}
    assert {"rollout", "learner", "rollout-0", "rollout-1", "ranks"} <= names
    again = Timeline(tmp_path / "timeline.json")  # a resumed run appends to what is there
    assert len(again.events) == 4 and again.busy(100.0, 110.0, {"learner": 1})["pool/learner_busy"] == 0.2


def test_capacity_model_overlaps_generation_with_training():
    from cluster.capacity import Rates, Shape, Split, best, predict

    rates = Rates(generation=100.0, training=50.0, forward=200.0, weight_sync_s=1.0)
    shape = Shape(responses=10, response_tokens=40.0, prompt_tokens=60.0, learner_old_logprobs=False)
    # generate 400 tokens / 1 engine = 4 s; update 1000 / (2 x 50) = 10 s; reference 1000 / 200 = 5 s; sync 1 s
    sync = predict(rates, shape, Split(1, 2, 1), 0)
    assert sync.step_s == pytest.approx(4 + 5 + 10 + 1)
    stale = predict(rates, shape, Split(1, 2, 1), 1)
    assert stale.step_s == pytest.approx(10 + 1) and stale.busy["learner"] == pytest.approx(1.0)
    assert stale.busy["rollout"] == pytest.approx(5 / 11) and stale.busy["reference"] == pytest.approx(5 / 11)
    coloc = predict(rates, shape, Split(1, 2, 0), 1)  # the reference's 1000 tokens on 2 ranks: +2.5 s learner time
    assert coloc.step_s == pytest.approx(12.5 + 1) and "reference" not in coloc.busy
    assert best(rates, shape, 4, 1).split.devices == 4


def test_capacity_model_script_prints_the_table(tmp_path):
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"generation": 100.0, "training": 50.0, "forward": 200.0, "weight_sync_s": 1.0}))
    script = [sys.executable, str(ROOT / "scripts" / "capacity_model.py")]
    p = subprocess.run(
        [*script, "--rates", str(rates), "--devices", "4", "8", "--config", "none"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert "| 4 | current: 1 gen / 2 learn / 1 ref | 0 |" in p.stdout and "recommended on 8 devices" in p.stdout
    # the 3B preset's split is "current", carried to 8 devices; it is the best split at its own max_staleness (0)
    p = subprocess.run([*script, "--devices", "4", "8"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "| 8 | current: 4 gen / 4 learn / ref on learners | 0 |" in p.stdout
    assert "recommended on 4 devices: 2 gen / 2 learn / ref on learners at max_staleness 0" in p.stdout
    rates.write_text(json.dumps({"generation": 100.0}))
    p = subprocess.run([*script, "--rates", str(rates)], capture_output=True, text=True)
    assert p.returncode != 0 and "lacks training, forward, weight_sync_s" in p.stderr and "Traceback" not in p.stderr


def test_hf_engine_reports_the_sampling_logprobs(stvqa, tiny_model):
    """Staleness needs the engine's log-probs as the sampling policy's: the transformers engine reports them, equal to
    the learner's scoring of the same tokens at the same temperature (full distribution, image tokens blocked)."""
    import torch

    from actors.model import PromptEncoder, load_policy
    from actors.policy import Sequence, token_logprobs
    from actors.rollout import HFGenerateEngine
    from actors.settings import RolloutSettings

    engine = HFGenerateEngine(tiny_model, RolloutSettings(engine="hf", max_new_tokens=10, temperature=0.7), "float32")
    groups = engine.generate(make_requests(stvqa, 2), 2)
    model, encoder = load_policy(tiny_model, "float32").eval(), PromptEncoder(tiny_model)
    pairs = [(g, r) for g in groups for r in g.responses]
    seqs = [Sequence(g.prompt, r.token_ids) for g, r in pairs]
    logprobs, mask = token_logprobs(model, seqs, encoder.pad_token_id, 0.7, blocked=encoder.forbidden_ids)
    for k, (_, r) in enumerate(pairs):
        assert len(r.engine_logprobs) == len(r.token_ids) > 0
        assert torch.allclose(logprobs[k][mask[k]], torch.tensor(r.engine_logprobs), atol=1e-4)
    assert all(
        r.engine_logprobs is None for r in engine.generate(make_requests(stvqa, 1), 1, temperature=0.0)[0].responses
    )


def test_pool_submit_scores_chunks_from_texts_as_they_land(ray_local, stvqa, tiny_model):
    """Two submissions queued at once on one worker; each chunk's reward call is attached when it goes out and
    receives only the chunk summary's texts and ground truth (several groups per call)."""
    from actors.records import ScoreRequest
    from actors.reward_worker import RewardWorker
    from actors.settings import RolloutSettings
    from cluster.pool import RolloutPool
    from rewards.spatial import RewardConfig

    ray = ray_local
    scorer = RewardWorker.options(num_cpus=0.25).remote(RewardConfig())
    pool = RolloutPool(tiny_model, RolloutSettings(engine="hf", max_new_tokens=8, num_cpus=0.25), "float32")
    pool.add_workers(1)
    calls = []

    def follow(chunk, summary_ref, group_refs):
        calls.append(list(chunk))
        reward = scorer.score_groups.remote(summary_ref)
        return [{"reward": reward, "pos": pos} for pos in range(len(group_refs))]

    try:
        first = pool.submit(make_requests(stvqa, 4, "a"), 2, follow=follow)
        second = pool.submit(make_requests(stvqa, 2, "b"), 2, follow=follow)
        assert len(calls) == 2 and not first.done  # the worker takes two chunks; the rest waits in the queue
        results = pool.collect(first) + pool.collect(second)
        assert sorted(map(tuple, calls)) == [(0,), (0, 1), (1,), (2, 3)]
        for r in results:
            scores = ray.get(r.follow["reward"])
            assert len(scores.rewards[r.follow["pos"]]) == 2 and scores.end >= scores.start > 0
            assert all(isinstance(s, ScoreRequest) for s in r.summary["score"])
        assert {r.summary["version"] for r in results} == {0} and pool.size() == 1
        group = ray.get(results[0].group)
        direct = ray.get(scorer.score_groups.remote(results[0].summary["score"])).rewards[0]
        assert [b.total for b in direct] == [b.total for b in ray.get(scorer.score.remote(group))]
    finally:
        pool.shutdown()
        ray.kill(scorer)


@pytest.mark.slow
def test_staleness_1_sigterm_checkpoints_then_resumes_and_writes_the_timeline(tmp_path):
    """SIGTERM checkpoints after the current step and exits; the checkpoint resumes at the first prompt not trained
    on (the next step's prompts were already drawn and generated), and the resumed run logs each step once."""
    from cluster.checkpoints import read_state

    out = tmp_path / "run"
    output = sigterm_after_steps(out, 3, *STALE)
    assert "SIGTERM received" in output
    latest = (out / "checkpoints" / "latest").read_text()
    stopped = int(latest[5:])
    assert stopped >= 2 and metric_steps(out)[-1] == stopped
    assert read_state(out / "checkpoints" / latest)["pos"] == 2 * stopped  # 2 prompts per step, none skipped

    rc, log = run_train(out, "--steps", str(stopped + 2), *STALE)
    assert rc == 0, log[-4000:]
    assert "resumed from" in log and f"step {stopped + 2}/{stopped + 2}" in log
    assert metric_steps(out) == list(range(stopped + 3))  # validation at 0, then every step once
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    assert all(0 <= m["rollout/staleness_max"] <= 1 for m in lines)
    assert lines[1]["rollout/staleness_max"] == 1  # step 2's prompts were generated while step 1 trained
    assert lines[-1]["rollout/staleness_max"] == 1  # so were the last step's, after the resume
    assert all(0 < m["pool/learner_busy"] <= 1 for m in lines)
    assert all(0 < m["pool/rollout_busy"] <= 1 for m in lines[:-1])  # the last step has nothing left to generate
    trace = json.loads((out / "timeline.json").read_text())["traceEvents"]
    assert {e["cat"] for e in trace if e["ph"] == "X"} == {"rollout", "reward", "reference", "learner"}
    assert {e["args"]["step"] for e in trace if e["ph"] == "X"} >= set(range(1, stopped + 3))


@pytest.mark.slow
def test_staleness_1_elastic_pool_worker_death_and_dynamic_sampling(tmp_path, stvqa_dir, tiny_model, caplog):
    """Scale up, then kill a worker while it generates the next step's prompts (during the update): the chunk is
    re-queued, the step completes, nothing older than the bound is trained on, and every worker holds the latest
    weights. Dynamic sampling runs throughout: the untrained tiny model earns flat rewards, so each step draws
    extra prompts once and fills the batch with flat groups."""
    import ray

    from cluster.trainer import GRPOTrainer

    cfg = demo_config(  # the demo's engine log-probs: staleness > 0 trains against the sampling policy's
        *[
            f"output_dir={tmp_path / 'elastic'}",
            f"model.path={tiny_model}",
            f"data.dataset={stvqa_dir}",
            "rollout.engine=hf",
            "rollout.max_new_tokens=24",
            "rollout.group_size=2",
            "algo.prompts_per_step=4",
            "algo.prompts_per_update=2",
            "algo.max_staleness=1",
            "algo.filter_groups=true",
            "algo.filter_max_draws=1",
            "rollout.max_workers=3",
            "steps=4",
            "ray_num_cpus=4",
            "eval.val_before_train=false",
            "eval.val_every=0",
        ],
    )
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        first = trainer.train_step()
        assert first["algo/extra_draws"] == 1 and first["algo/extra_generations"] == 4
        assert first["algo/kept_fraction"] == 0.0 and "filling the batch" in caplog.text
        ray.get(trainer.control.set_rollout_workers.remote(2))
        trainer.train_step()
        assert trainer.pool.size() == 2
        victim = next(iter(trainer.pool.workers.values())).handle
        pid = ray.get(victim.__ray_call__.remote(lambda self: os.getpid()))
        trainer.pipeline.top_up(trainer.step + 2)  # step 4's prompts go out now, so the kill lands mid-chunk
        threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
        metrics = trainer.train_step()
        metrics = trainer.train_step()
        assert trainer.step == 4 and metrics["rollout/workers"] >= 1
        assert any(event == "died" for event, _, _ in trainer.pool.events)
        assert metrics["rollout/staleness_max"] <= 1
        assert {ray.get(w.handle.ready.remote())["version"] for w in trainer.pool.workers.values()} == {
            trainer.version
        }
        trainer.tracker.end("FINISHED")
    finally:
        trainer.shutdown()
