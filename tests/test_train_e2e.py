"""scripts/train.py end to end on CPU: local Ray, tiny model, synthetic VG
data, MLflow file store, checkpoint and resume, elastic rollout workers."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow

FAST = [
    "--set", "model.warm_start_steps=20",
    "--set", "data.synthetic_images=6",
    "--set", "rollout.max_new_tokens=24",
    "--set", "rollout.group_size=2",
    "--set", "algo.prompts_per_step=2",
    "--set", "ray_num_cpus=4",
]


def run_cli(out, *extra, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--output-dir", str(out), *FAST, *extra],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT),
    )
    return p


def mlflow_metric_steps(out, key):
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("spatialthinker")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0], sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, key))


def test_train_checkpoint_resume(tmp_path):
    out = tmp_path / "run"
    p = run_cli(out, "--steps", "2", "--set", "save_every=1")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "step 2/2" in p.stdout
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
    assert (out / "checkpoints" / "step_1" / "trainer_state.json").exists()
    assert (out / "final_model" / "config.json").exists()
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2]
    assert 0.0 <= lines[0]["reward/total"] <= 1.0
    run, steps = mlflow_metric_steps(out, "reward/total")
    assert steps == [1, 2]
    assert run.data.params["learner.zero_stage"] == "3"

    # resume: continues at step 3 in the same MLflow run
    p = run_cli(out, "--steps", "3")
    assert p.returncode == 0, p.stderr[-5000:]
    assert "resumed from" in p.stdout and "step 3/3" in p.stdout and "step 1/3" not in p.stdout
    run2, steps = mlflow_metric_steps(out, "reward/total")
    assert run2.info.run_id == run.info.run_id and steps == [1, 2, 3]

    # refusing to clobber a run, and a bad resume target, are clear errors
    p = run_cli(out, "--steps", "4", "--resume", "never")
    assert p.returncode == 2 and "already holds checkpoints" in p.stderr
    p = run_cli(out, "--steps", "4", "--set", "learner.num_workers=1", "--set", "algo.prompts_per_step=1")
    assert p.returncode == 2 and "learner.num_workers=2" in p.stderr


def test_bad_dataset_path_is_clear(tmp_path):
    p = run_cli(tmp_path / "r", "--set", f"data.dataset={tmp_path / 'nope'}")
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_elastic_rollout_workers_during_training(tmp_path, stvqa_dir, tiny_model):
    import ray

    from cluster.config import load_config
    from cluster.trainer import GRPOTrainer

    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'elastic'}", f"model.path={tiny_model}", f"data.dataset={stvqa_dir}",
            "rollout.max_new_tokens=12", "rollout.group_size=2", "algo.prompts_per_step=2", "rollout.max_workers=3", "steps=3", "ray_num_cpus=4",
        ],
    )
    tr = GRPOTrainer(cfg)
    try:
        tr.setup()
        assert tr.pool.size() == 1
        tr.train_step()
        ray.get(tr.control.set_rollout_workers.remote(3))
        m = tr.train_step()
        assert tr.pool.size() == 3 and m["rollout/workers"] == 3
        # lose a worker mid-training: the step still completes
        ray.kill(next(iter(tr.pool.workers.values())).handle, no_restart=True)
        ray.get(tr.control.set_rollout_workers.remote(2))
        m = tr.train_step()
        assert tr.step == 3 and 1 <= tr.pool.size() <= 2
        # every live worker holds the latest weights
        assert {ray.get(w.handle.ready.remote())["version"] for w in tr.pool.workers.values()} == {tr.version}
        tr.tracker.end()
    finally:
        tr.shutdown()
