"""The training config: one typed tree, defaults in one place, one-line errors naming the key."""

import ast
import dataclasses
import inspect
import subprocess
import sys

import pytest

from actors import grpo, settings
from cluster import config as config_mod
from cluster.config import ConfigError, TrainConfig, load_config
from rewards import prompt, spatial

from ..conftest import ROOT


def test_defaults_validate():
    cfg = load_config()
    assert cfg.learner.zero_stage == 3 and cfg.algo.kl_beta == 0.01 and cfg.rollout.engine == "vllm"
    assert cfg.algo.prompts_per_step % cfg.algo.prompts_per_update == 0


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\nrollout:\n  group_size: 8\n  engine: hf\neval:\n  benchmarks: [cv-bench-2d, mmvp]\n")
    cfg = load_config(str(f), ["learner.lr=2e-5", "algo.clip_ratio_high=0.28", "run_name=null", "algo.dual_clip=null"])
    assert (cfg.steps, cfg.rollout.group_size, cfg.rollout.engine, cfg.learner.lr) == (7, 8, "hf", 2e-5)
    assert cfg.algo.clip_ratio_high == 0.28 and cfg.algo.dual_clip is None and cfg.run_name is None
    assert cfg.eval.benchmarks == ["cv-bench-2d", "mmvp"]
    assert isinstance(cfg.algo.loss_settings(), grpo.LossSettings)


@pytest.mark.parametrize(
    "override,message",
    [
        (["rollout.nope=1"], "unknown config key 'rollout.nope'"),
        (["steps=abc"], "steps must be an integer"),
        (["rollout.group_size=1"], "rollout.group_size must be >= 2"),
        (["rollout.engine=tgi"], "rollout.engine must be"),
        (["algo.prompts_per_update=3", "algo.prompts_per_step=9"], "multiple of learner.num_workers"),
        (["algo.prompts_per_step=12"], "must be a multiple of algo.prompts_per_update"),
        (["learner.gradient_checkpointing=maybe"], "must be a boolean"),
        (["nodots"], "must look like key.sub=value"),
        (["rollout=3"], "rollout must be a mapping"),
        (["learner.lr=inf"], "learner.lr must be a finite number > 0"),
        (["learner.lr=0"], "learner.lr must be a finite number > 0"),
        (["learner.micro_batch_size=0"], "learner.micro_batch_size must be an integer >= 1"),
        (["algo.ppo_epochs=0"], "algo.ppo_epochs must be an integer >= 1"),
        (["algo.prompts_per_step=0"], "algo.prompts_per_step must be an integer >= 1"),
        (["algo.kl_beta=-1"], "algo.kl_beta"),
        (["algo.dual_clip=0.5"], "algo.dual_clip"),
        (["rollout.temperature=-0.5"], "rollout.temperature must be a finite number > 0"),
        (["learner.weight_decay=-0.1"], "learner.weight_decay must be a finite number >= 0"),
        (["learner.beta2=1.5"], "learner.beta2 must be in"),
        (["eval.val_every=-1"], "eval.val_every must be an integer >= 0"),
        (["prompt.max_pixels=10"], "prompt.max_pixels"),
        (["model.dtype=int8"], "model.dtype must be one of"),
        (["rollout.num_workers=9"], "min_workers <= num_workers <= max_workers"),
        (["keep_checkpoints=-1"], "keep_checkpoints must be >= 0"),
    ],
)
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, override)
    assert "\n" not in str(err.value)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    f = tmp_path / "bad.json"
    f.write_text("{")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_config(str(f))


def _section_classes():
    return [
        settings.ModelSettings,
        settings.RolloutSettings,
        settings.LearnerSettings,
        settings.ReferenceSettings,
        settings.RewardWorkerSettings,
        grpo.LossSettings,
        spatial.RewardConfig,
        prompt.PromptSettings,
        config_mod.DataSettings,
        config_mod.EvalSettings,
        config_mod.AlgoSettings,
        TrainConfig,
    ]


@pytest.mark.parametrize("cls", _section_classes(), ids=lambda c: c.__name__)
def test_every_field_has_a_docstring(cls):
    """Every setting is documented where its default lives (an attribute docstring right under the field)."""
    source = inspect.getsource(cls)
    tree = ast.parse(source)
    body = tree.body[0].body
    documented = set()
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and i + 1 < len(body):
            nxt = body[i + 1]
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                documented.add(node.target.id)
    own = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name in {n.target.id for n in body if isinstance(n, ast.AnnAssign)}
    ]
    sections = (
        {f.name for f in dataclasses.fields(TrainConfig) if dataclasses.is_dataclass(f.default_factory)}
        if cls is TrainConfig
        else set()
    )
    missing = [name for name in own if name not in documented and name not in sections]
    assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_actors_read_no_untyped_settings():
    """No actor reads its settings from a dict: no ``cfg.get(`` / ``settings.get(`` in actors/."""
    for path in (ROOT / "actors").glob("*.py"):
        text = path.read_text()
        for pattern in ("cfg.get(", "settings.get(", "vars(", "config.get("):
            assert pattern not in text, f"{path.name} uses {pattern}"


def test_cli_reports_config_errors():
    train = str(ROOT / "scripts" / "train.py")
    p = subprocess.run(
        [sys.executable, train, "--set", "rollout.engine=tgi"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "error: rollout.engine must be" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(
        [sys.executable, train, "--print-config", "--steps", "3"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and '"steps": 3' in p.stdout


def test_relative_output_dir_refused_in_a_ray_job_working_copy(tmp_path, monkeypatch):
    copy = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(ConfigError, match="absolute path"):
        config_mod.resolve_output_dir("runs/x")
    assert config_mod.resolve_output_dir(str(tmp_path / "abs")) == tmp_path / "abs"
