"""Reliability under faults and bad input: real processes are killed, real Ray actors are over-asked, a real MLflow
store goes away, and bad inputs get one-line errors that lose nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ..conftest import ROOT, demo

FAST = [
    "--set",
    "rollout.engine=hf",
    "--set",
    "model.warm_start_steps=5",
    "--set",
    "data.synthetic_images=30",
    "--set",
    "rollout.max_new_tokens=12",
    "--set",
    "rollout.group_size=2",
    "--set",
    "algo.prompts_per_step=2",
    "--set",
    "algo.prompts_per_update=2",
    "--set",
    "eval.val_samples=2",
    "--set",
    "eval.val_every=0",
    "--set",
    "ray_num_cpus=4",
]


def train_cmd(out, *extra):
    return [sys.executable, str(ROOT / "scripts" / "train.py"), "--output-dir", str(out), *FAST, *extra]


def run_train(out, *extra, env=None, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env.pop("RAY_ADDRESS", None)
    # a new session, so that a kill of the group takes the driver's own Ray processes with it
    p = subprocess.Popen(
        train_cmd(out, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(ROOT),
        start_new_session=True,
    )
    try:
        output, _ = p.communicate(timeout=timeout)
    finally:
        _kill_group(p)
    return p.returncode, output


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def metric_steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_driver_killed_mid_checkpoint_resumes_from_the_last_complete_one(tmp_path):
    out = tmp_path / "run"
    rc, log = run_train(
        out, "--steps", "3", "--set", "save_every=1", env={"SPATIALTHINKER_KILL_AFTER_SHARDS": "step_2"}
    )
    assert rc == -signal.SIGKILL, log[-3000:]
    assert (out / "checkpoints" / "latest").read_text() == "step_1"  # never an incomplete checkpoint
    assert metric_steps(out) == [0, 1, 2]
    rc, log = run_train(out, "--steps", "3", "--set", "save_every=1")
    assert rc == 0, log[-4000:]
    assert "resumed from" in log and "step_1" in log and "step 2/3" in log and "step 3/3" in log
    assert metric_steps(out) == [0, 1, 2, 3]  # the redone step 2 is logged once
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    run = client.search_runs([client.get_experiment_by_name("spatialthinker").experiment_id])[0]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "reward/total")) == [1, 2, 3]
    assert any(k.startswith("interrupted_after_step_2") for k in run.data.tags)  # the kill is marked
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "completed"


@pytest.mark.slow
def sigterm_after_steps(out, steps: int, *extra) -> str:
    """Train (200 steps, checkpoints every 100) until ``steps`` steps are logged, send SIGTERM, and return the
    output of a run that then exited 0."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen(
        train_cmd(out, "--steps", "200", "--set", "save_every=100", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(ROOT),
        start_new_session=True,
    )
    try:
        deadline = time.time() + 400
        while time.time() < deadline and not ((out / "metrics.jsonl").exists() and len(metric_steps(out)) >= steps):
            time.sleep(1)
        assert len(metric_steps(out)) >= steps
        p.send_signal(signal.SIGTERM)
        output, _ = p.communicate(timeout=300)
    finally:
        _kill_group(p)
    assert p.returncode == 0, output[-3000:]
    return output


def test_sigterm_checkpoints_and_exits(tmp_path):
    out = tmp_path / "run"
    output = sigterm_after_steps(out, 2)
    assert "SIGTERM received" in output
    latest = (out / "checkpoints" / "latest").read_text()
    assert latest.startswith("step_") and int(latest[5:]) >= 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    run = client.search_runs([client.get_experiment_by_name("spatialthinker").experiment_id])[0]
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "stopped"


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, log = run_train(blocker / "run", "--steps", "1", timeout=120)
    assert rc == 2 and "is not writable" in log and "Traceback" not in log


def test_unreachable_tracking_server_fails_fast(tmp_path):
    from actors.common import free_port

    start = time.time()
    rc, log = run_train(
        tmp_path / "run", "--steps", "1", "--set", f"mlflow_tracking_uri=http://127.0.0.1:{free_port()}", timeout=120
    )
    assert rc == 2 and "is not reachable" in log and "Traceback" not in log
    assert time.time() - start < 60


def test_tracking_outage_is_buffered_and_replayed(tmp_path, caplog):
    from mlflow.tracking import MlflowClient

    from cluster.tracking import Tracker, default_uri

    uri = default_uri(tmp_path)
    tracker = Tracker(uri, "exp", "r", tmp_path / "buffer.jsonl")
    tracker.log_metrics({"m": 1.0}, 1, 1000)
    store = tmp_path / "mlruns"
    store.rename(tmp_path / "away")
    store.write_text("the store is gone")  # every write to it now fails
    tracker.log_metrics({"m": 2.0}, 2, 2000)  # no exception: buffered
    assert tracker.healthy is False and (tmp_path / "buffer.jsonl").exists()
    assert "buffering" in caplog.text
    store.unlink()
    (tmp_path / "away").rename(store)
    tracker.log_metrics({"m": 3.0}, 3, 3000)  # the server is back: the buffer is replayed first
    assert not (tmp_path / "buffer.jsonl").exists()
    history = MlflowClient(tracking_uri=uri).get_metric_history(tracker.run_id, "m")
    assert sorted((h.step, h.value) for h in history) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    tracker.end("FINISHED")


def test_unplaceable_rollout_workers_are_dropped_and_reported(ray_local, tiny_model):
    from cluster.pool import RolloutPool

    settings = demo("rollout", engine="hf", num_cpus=64, placement_timeout_s=3, max_workers=8)
    pool = RolloutPool(tiny_model, settings, "float32")
    start = time.time()
    added, unplaced = pool.add_workers(2)
    assert added == [] and unplaced == 2 and pool.size() == 0
    assert time.time() - start < 30
    result = pool.scale_to(100)
    assert result.target == 8 and "capped from 100 to 8" in result.note and "could not be placed" in result.note


def test_scale_rollout_names_runs_unambiguously(ray_local):
    from cluster.control import TrainingControl, control_name

    ray = ray_local
    controls = [
        TrainingControl.options(name=control_name(rid), namespace="spatialthinker").remote(rid, 1, 1, 8)
        for rid in ("myrun-aaaa1111", "myrun-bbbb2222")
    ]
    ray.get([c.status.remote() for c in controls])
    address = ray.get_runtime_context().gcs_address
    script = [sys.executable, str(ROOT / "scripts" / "scale_rollout.py"), "--address", address]
    p = subprocess.run([*script, "--run", "myrun", "--status"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "matches several running jobs" in p.stderr
    p = subprocess.run(
        [*script, "--run", "myrun-aaaa1111", "--workers", "100"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert "capped to 8" in p.stderr
    assert json.loads(p.stdout)["desired_rollout_workers"] == 8
    assert ray.get(controls[1].desired_rollout_workers.remote()) == 1  # the other run is untouched
    p = subprocess.run([*script, "--run", "nosuchrun", "--stop"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no running job 'nosuchrun'" in p.stderr
    for c in controls:
        ray.kill(c)


def test_scale_rollout_without_ray_is_one_line(tmp_path):
    from actors.common import free_port

    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "scale_rollout.py"),
            "--address",
            f"127.0.0.1:{free_port()}",
            "--run",
            "x",
            "--status",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 2 and "cannot reach a Ray cluster" in p.stderr and "Traceback" not in p.stderr


def test_reward_worker_killed_is_restarted(ray_local, stvqa, tiny_model):
    from actors.reward_worker import RewardWorker
    from actors.rollout import HFGenerateEngine
    from rewards.spatial import RewardConfig

    from ..conftest import make_requests

    ray = ray_local
    group = HFGenerateEngine(tiny_model, demo("rollout", engine="hf", max_new_tokens=6), "float32").generate(
        make_requests(stvqa, 1), 2
    )[0]
    worker = RewardWorker.options(num_cpus=0.25).remote(RewardConfig())
    assert len(ray.get(worker.score.remote(group))) == 2
    pid = ray.get(worker.__ray_call__.remote(lambda self: os.getpid()))
    os.kill(pid, signal.SIGKILL)
    assert len(ray.get(worker.score.remote(group), timeout=120)) == 2  # restarted by Ray, the task retried


def test_bad_training_row_is_skipped_and_reported(stvqa):
    from cluster.trainer import PromptStream
    from rewards.prompt import PromptBuilder

    rows = [dict(stvqa[i]) for i in range(4)]
    rows[1]["images"] = [{"bytes": b"not an image", "path": None}]
    stream = PromptStream(rows, seed=0, shuffle=False, prompts=PromptBuilder(demo("prompt")))
    requests = stream.take(3, step=1)
    assert len(requests) == 3 and len(stream.skipped) == 1
    assert "cannot be decoded" in stream.skipped[0] and str(rows[1]["image_id"]) in stream.skipped[0]


def test_train_starts_its_own_ray_beside_a_ray_start_cluster(tmp_path):
    """A `ray start` cluster on the machine does not break the default job: it starts its own local instance."""
    from actors.common import free_port

    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    port = free_port()
    head = subprocess.Popen(
        ["ray", "start", "--head", f"--port={port}", "--num-cpus=1", "--block", "--include-dashboard=false"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(8)
        code = (
            f"import ray, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from cluster.config import load_config\nfrom cluster.trainer import init_ray\n"
            "started = init_ray(load_config(None, ['ray_num_cpus=2']))\n"
            "print('started', started, ray.get_runtime_context().gcs_address)\n"
        )
        env.pop("RAY_ADDRESS", None)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "started True" in p.stdout and f":{port}" not in p.stdout
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


@pytest.mark.slow
def test_reference_actor_killed_is_restarted(ray_local, stvqa, tiny_model):
    from actors.learner import ReferencePolicy
    from actors.rollout import HFGenerateEngine
    from actors.settings import ReferenceSettings

    from ..conftest import make_requests

    ray = ray_local
    group = HFGenerateEngine(tiny_model, demo("rollout", engine="hf", max_new_tokens=6), "float32").generate(
        make_requests(stvqa, 1), 2
    )[0]
    reference = ReferencePolicy.options(num_cpus=0.25).remote(tiny_model, ReferenceSettings(), "float32", 1.0)
    before = ray.get(reference.compute_logprobs.remote(group)).logprobs
    pid = ray.get(reference.__ray_call__.remote(lambda self: os.getpid()))
    os.kill(pid, signal.SIGKILL)
    after = ray.get(reference.compute_logprobs.remote(group), timeout=180).logprobs  # restarted, call retried
    assert ray.get(reference.__ray_call__.remote(lambda self: os.getpid())) != pid
    assert len(after) == len(before) and all(a == pytest.approx(b, abs=1e-5) for a, b in zip(after, before))
    ray.kill(reference)


@pytest.mark.slow
def test_learner_rank_killed_stops_naming_the_rank(ray_local, tiny_model):
    """A dead rank must not leave the others waiting in a collective: the group call fails at once, naming it."""
    from actors.grpo import LossSettings
    from actors.learner import BatchPlan, LearnerGroup, LearnerRankDied

    ray = ray_local
    group = LearnerGroup(
        tiny_model,
        demo("learner", num_workers=2, micro_batch_size=2, device="cpu"),
        LossSettings(),
        BatchPlan(groups_per_step=2, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
    )
    try:
        assert isinstance(ray.get(group.weights()), dict)  # healthy: rank 0's gathered state dict
        pid = ray.get(group.ranks[1].__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(LearnerRankDied, match=r"learner rank 1 of 2 died during the weight gather"):
            group.weights()
        assert time.monotonic() - start < 60  # not the collective's own timeout (30 minutes in gloo)
    finally:
        group.shutdown()
