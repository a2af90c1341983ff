"""The training config: one typed tree, defaults in one place, one-line errors naming the key."""

import ast
import dataclasses
import inspect
import json
import subprocess
import sys

import pytest

from actors import grpo, settings
from cluster import config as config_mod
from cluster.config import ConfigError, TrainConfig, load_config
from rewards import prompt, spatial

from ..conftest import ROOT
from .test_presets import TABLE as PRESET_TABLE


def test_defaults_validate():
    cfg = load_config()
    assert cfg.learner.zero_stage == 3 and cfg.algo.kl_beta == 0.01 and cfg.rollout.engine == "vllm"
    assert cfg.algo.prompts_per_step % cfg.algo.prompts_per_update == 0


PAPER = {k: v for k, v in PRESET_TABLE.items() if k != "model.dtype"} | {
    "model.path": "Qwen/Qwen2.5-VL-3B-Instruct",
    "rollout.use_engine_logprobs": False,
    "eval.val_samples": 0,
    "eval.val_responses": 1,
}
"""The paper's training setting (the presets' table, SpatialThinker recipe section 4) as config keys; ``model.dtype``
stays ``auto`` by default (bfloat16 on GPU, float32 on CPU)."""

CLUSTER_ONLY = {"output_dir", "save_every", "keep_checkpoints", "model.dtype", "reward.label_similarity"}
"""Keys the 3B preset may set differently from the defaults: paths, checkpointing, dtype, spaCy names (an optional
package), and every section's resources (``*.device``, ``*.num_gpus`` ...; matched below)."""


def test_defaults_are_the_papers():
    """Every default is the paper's value; the 3B preset adds only paths, resources and GPU-only choices."""
    defaults = config_mod.flatten(load_config().to_dict())
    assert {k: defaults[k] for k in PAPER} == PAPER
    preset = config_mod.flatten(load_config(str(ROOT / "cluster/configs/spatialthinker_3b.yaml")).to_dict())
    # per-GPU resources and memory choices (micro-batch sizes and token budgets, ZeRO-3 buffers) are the preset's
    resources = ("device", "num_cpus", "num_gpus", "micro_batch_size", "gradient_checkpointing", "weight_sync")
    resources += ("max_tokens_per_micro_batch", "overlap_comm", "param_persistence_threshold")
    resources += ("num_workers", "colocate_with_learner")  # the split of GPUs between the pools
    differ = {k for k in defaults if defaults[k] != preset[k]}
    other = {k for k in differ - CLUSTER_ONLY if not k.endswith(resources) and k != "rollout.gpu_memory_utilization"}
    assert not other, f"the 3B preset differs from the defaults in {sorted(other)}"


def test_cpu_demo_is_what_train_runs_without_config():
    """``scripts/train.py`` without ``--config`` resolves to cluster/configs/cpu_demo.yaml, which differs from the
    paper's defaults only in the keys the README's changelog lists."""
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--print-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    demo = load_config(str(config_mod.DEMO_CONFIG)).to_dict()
    assert json.loads(p.stdout) == demo
    flat, defaults = config_mod.flatten(demo), config_mod.flatten(load_config().to_dict())
    assert {k for k in flat if flat[k] != defaults[k]} == {
        "output_dir",
        "steps",
        "model.path",
        "data.dataset",
        "prompt.min_pixels",
        "prompt.max_pixels",
        "rollout.temperature",
        "rollout.max_new_tokens",
        "rollout.max_model_len",
        "rollout.use_engine_logprobs",
        "learner.lr",
        "algo.prompts_per_step",
        "algo.prompts_per_update",
        "eval.val_every",
        "eval.val_samples",
        "eval.val_responses",
    }
    assert (
        flat["model.path"] is None and flat["prompt.max_pixels"] == 112 * 112 and flat["rollout.max_new_tokens"] == 160
    )


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
