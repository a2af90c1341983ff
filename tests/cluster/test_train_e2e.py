"""scripts/train.py end to end on CPU: local Ray, tiny model, synthetic VG data, vLLM rollouts, ZeRO-3 on gloo,
MLflow file store, validation, checkpoint and resume, the elastic pool during training."""

import json
import os
import subprocess
import sys

import pytest

from ..conftest import ROOT, demo, demo_config

pytestmark = pytest.mark.slow

FAST = [
    "--set",
    "model.warm_start_steps=20",
    "--set",
    "data.synthetic_images=30",
    "--set",
    "rollout.max_new_tokens=24",
    "--set",
    "rollout.group_size=2",
    "--set",
    "algo.prompts_per_step=4",
    "--set",
    "algo.prompts_per_update=2",
    "--set",
    "eval.val_samples=4",
    "--set",
    "eval.val_every=2",
    "--set",
    "ray_num_cpus=4",
]


def run_cli(out, *extra, timeout=900):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--output-dir", str(out), *FAST, *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(ROOT),
    )


def mlflow_run(out):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("spatialthinker").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.parametrize("engine", ["vllm"])
def test_train_validate_checkpoint_resume(tmp_path, engine):
    out = tmp_path / "run"
    p = run_cli(out, "--steps", "2", "--set", "save_every=1", "--set", f"rollout.engine={engine}")
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-6000:]
    assert "step 2/2" in log and "held-out reward" in log
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
    assert (out / "final_model" / "config.json").exists() and (out / "curves.png").stat().st_size > 1000
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2]  # validation before training, then the steps
    assert 0.0 <= lines[1]["reward/total"] <= 1.0 and lines[1]["rollout/logprob_diff_mean"] < 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["val_before"]) == {"reward", "accuracy"} and summary["val_after"] is not None
    client, run = mlflow_run(out)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "completed"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "reward/total")) == [1, 2]
    assert run.data.params["learner.zero_stage"] == "3"

    # resume: continues at step 3 in the same MLflow run, logging each step once
    p = run_cli(out, "--steps", "3", "--set", f"rollout.engine={engine}", "--set", "rollout.temperature=0.9")
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-6000:]
    assert "resumed from" in log and "step 3/3" in log and "step 1/3" not in log
    default_temperature = demo("rollout").temperature
    assert "settings changed on resume" in log and f"rollout.temperature: {default_temperature} -> 0.9" in log
    assert "rollout.temperature" in (out / "config_changes.jsonl").read_text()
    client, run2 = mlflow_run(out)
    assert run2.info.run_id == run.info.run_id
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "reward/total")) == [1, 2, 3]

    # refusing to clobber a run, and a bad resume target, are one-line errors
    p = run_cli(out, "--steps", "4", "--resume", "never")
    assert p.returncode == 2 and "already holds checkpoints" in p.stderr and "Traceback" not in p.stderr
    p = run_cli(out, "--steps", "4", "--set", "learner.num_workers=1")
    assert p.returncode == 2 and "learner.num_workers=2" in p.stderr


def test_bad_dataset_path_is_one_line(tmp_path):
    p = run_cli(tmp_path / "r", "--set", f"data.dataset={tmp_path / 'nope'}")
    assert p.returncode == 2 and "error:" in p.stderr and "Traceback" not in p.stderr


def test_vllm_worker_killed_mid_step_is_replaced_with_current_weights(tmp_path, stvqa_dir, tiny_model):
    import os
    import signal
    import threading

    import ray

    from cluster.trainer import GRPOTrainer

    cfg = demo_config(
        f"output_dir={tmp_path / 'elastic'}",
        f"model.path={tiny_model}",
        f"data.dataset={stvqa_dir}",
        "rollout.max_new_tokens=48",
        "rollout.group_size=2",
        "algo.prompts_per_step=4",
        "algo.prompts_per_update=2",
        "rollout.max_workers=3",
        "steps=3",
        "ray_num_cpus=4",
        "eval.val_before_train=false",
        "eval.val_every=0",
    )
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        assert trainer.pool.size() == 1
        trainer.train_step()
        ray.get(trainer.control.set_rollout_workers.remote(2))
        trainer.train_step()
        assert trainer.pool.size() == 2
        victim = next(iter(trainer.pool.workers.values())).handle
        pid = ray.get(victim.__ray_call__.remote(lambda self: os.getpid()))
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()  # dies while the step is generating
        metrics = trainer.train_step()
        assert trainer.step == 3 and metrics["rollout/workers"] >= 1
        assert any(event == "died" for event, _, _ in trainer.pool.events)
        # every live worker, the replacement included, holds the latest weights
        assert {ray.get(w.handle.ready.remote())["version"] for w in trainer.pool.workers.values()} == {
            trainer.version
        }
        trainer.tracker.end("FINISHED")
    finally:
        trainer.shutdown()
