import subprocess
import sys

import pytest

from cluster.config import ConfigError, load_config

from .conftest import ROOT


def test_defaults_validate():
    cfg = load_config()
    assert cfg.learner.zero_stage == 3 and cfg.algo.kl_beta == 0.01 and cfg.reward.lambda_obj == 0.7


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\nrollout:\n  group_size: 8\n  engine: vllm\n")
    cfg = load_config(str(f), ["learner.lr=2e-5", "algo.clip_eps_high=0.28", "run_name=null"])
    assert (cfg.steps, cfg.rollout.group_size, cfg.rollout.engine, cfg.learner.lr, cfg.algo.clip_eps_high) == (7, 8, "vllm", 2e-5, 0.28)


@pytest.mark.parametrize(
    "ov,msg",
    [
        (["rollout.nope=1"], "unknown config key 'rollout.nope'"),
        (["steps=abc"], "steps must be an integer"),
        (["rollout.group_size=1"], "group_size must be >= 2"),
        (["rollout.engine=tgi"], "rollout.engine must be"),
        (["algo.prompts_per_step=3"], "multiple of learner.num_workers"),
        (["learner.bf16=maybe"], "must be a boolean"),
        (["nodots"], "must look like key.sub=value"),
        (["rollout=3"], "rollout must be a mapping"),
        (["reward.w_format=-1"], "reward.w_format must be a non-negative number"),
    ],
)
def test_bad_overrides(ov, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, ov)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    f = tmp_path / "bad.json"
    f.write_text("{")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_config(str(f))


def test_cli_reports_config_errors():
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--set", "rollout.engine=tgi"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "error: rollout.engine must be" in p.stderr
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--print-config", "--steps", "3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and '"steps": 3' in p.stdout
