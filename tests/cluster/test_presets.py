"""The paper presets resolve to the training table of SpatialThinker (recipe section 4)."""

import json
import subprocess
import sys

import pytest

from ..conftest import ROOT

TABLE = {
    "rollout.group_size": 8,
    "rollout.temperature": 1.0,
    "rollout.top_p": 1.0,
    "rollout.max_new_tokens": 2048,
    "rollout.max_model_len": 6144 + 2048,
    "rollout.engine": "vllm",
    "algo.prompts_per_step": 512,
    "algo.prompts_per_update": 128,
    "algo.ppo_epochs": 1,
    "algo.unbiased_std": True,
    "algo.clip_ratio_low": 0.2,
    "algo.clip_ratio_high": 0.3,
    "algo.dual_clip": 3.0,
    "algo.kl_beta": 0.01,
    "algo.kl_estimator": "k3",
    "algo.kl_clamp": 10.0,
    "algo.kl_in": "loss",
    "algo.loss_agg_mode": "token-mean",
    "learner.lr": 1e-6,
    "learner.weight_decay": 0.01,
    "learner.beta1": 0.9,
    "learner.beta2": 0.999,
    "learner.grad_clip": 1.0,
    "learner.zero_stage": 3,
    "model.dtype": "bfloat16",
    "prompt.min_pixels": 512 * 512,
    "prompt.max_pixels": 2048 * 2048,
    "steps": 75,
    "eval.val_before_train": True,
    "eval.val_every": 5,
    "eval.val_temperature": 0.5,
    "data.dataset": "hunarbatra/STVQA-7K",
}


@pytest.mark.parametrize(
    "name,size,preset",
    [
        ("spatialthinker_3b", "3B", "spatialthinker"),
        ("spatialthinker_7b", "7B", "spatialthinker"),
        ("vanilla_grpo_3b", "3B", "vanilla"),
        ("vanilla_grpo_7b", "7B", "vanilla"),
    ],
)
def test_preset_matches_the_paper_table(name, size, preset):
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--config",
            str(ROOT / "cluster" / "configs" / f"{name}.yaml"),
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    flat = {f"{a}.{b}": v for a, sec in cfg.items() if isinstance(sec, dict) for b, v in sec.items()}
    flat.update({k: v for k, v in cfg.items() if not isinstance(v, dict)})
    for key, value in TABLE.items():
        assert flat[key] == value, f"{name}: {key} = {flat[key]!r}, paper {value!r}"
    assert flat["model.path"] == f"Qwen/Qwen2.5-VL-{size}-Instruct"
    assert flat["reward.preset"] == preset and flat["prompt.template"] == preset
    # one 4-GPU node: learner ranks + rollout engines + reference
    gpus = (
        flat["learner.num_workers"] * flat["learner.num_gpus"]
        + flat["rollout.num_workers"] * flat["rollout.num_gpus"]
        + flat["reference.num_gpus"]
    )
    assert gpus == 4
    assert flat["algo.prompts_per_step"] // flat["algo.prompts_per_update"] == 4  # optimizer steps per rollout batch
