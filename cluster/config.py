"""The training config: the typed sections of every role composed into one tree, loaded from YAML/JSON and
``key.sub=value`` overrides, and validated up front with messages that name the offending key.

Each section's defaults live with its role (``actors/settings.py``, ``actors/grpo.py``, ``rewards/spatial.py``,
``rewards/prompt.py``); the driver-only sections (data, eval) and the run-level keys live here. The defaults are the
paper's values (SpatialThinker-3B: Qwen2.5-VL-3B on STVQA-7K); ``cluster/configs/*.yaml`` hold the paper's presets
with their cluster resources, and ``cluster/configs/cpu_demo.yaml`` the small CPU demo that ``scripts/train.py`` runs
when no ``--config`` is given (:data:`DEMO_CONFIG`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from actors.grpo import LossSettings
from actors.settings import (
    LearnerSettings,
    ModelSettings,
    ReferenceSettings,
    RewardWorkerSettings,
    RolloutSettings,
)
from rewards.prompt import PromptSettings
from rewards.spatial import RewardConfig

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "cpu_demo.yaml"
"""The CPU demo (tiny model, synthetic scenes, small images and lengths): ``scripts/train.py`` without ``--config``."""


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message names it."""


def _int_at_least(section: str, obj, minimum: int, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{section}{name} must be an integer >= {minimum}, got {v!r}")


@dataclass
class DataSettings:
    """Where the STVQA data comes from (config section ``data``)."""

    dataset: str | None = "hunarbatra/STVQA-7K"
    """STVQA-7K-format data: a Hugging Face id (paper: ``hunarbatra/STVQA-7K``), a ``save_to_disk`` folder, or
    local parquet/arrow files. None: synthesise it (from ``vg_root``, or from synthetic scenes: the CPU demo)."""

    vg_root: str | None = None
    """A Visual Genome folder (objects.json, relationships.json, image_data.json, images/) to synthesise from."""

    synthetic_images: int = 600
    """With neither dataset nor vg_root: synthetic VG-format scenes to generate (600, the CPU demo's, give about
    540 train and 60 val rows)."""

    train_split: str = "train"
    """Split to train on."""

    val_split: str = "val"
    """Split to validate on."""

    relation_fraction: float = 0.5
    """Datagen: share of relation questions (paper: about half); the other categories share the rest evenly."""

    shuffle: bool = True
    """Shuffle the training rows each epoch (seeded)."""

    def __post_init__(self):
        _int_at_least("data.", self, 1, "synthetic_images")
        if not 0.0 <= self.relation_fraction <= 1.0:
            raise ValueError(f"data.relation_fraction must be in [0, 1], got {self.relation_fraction!r}")


@dataclass
class EvalSettings:
    """Validation during training (config section ``eval``)."""

    val_before_train: bool = True
    """Evaluate the policy on the validation split before the first GRPO step."""

    val_every: int = 5
    """Evaluate every this many steps (and after the last step; paper 5, the CPU demo 10); 0 turns periodic
    validation off."""

    val_samples: int = 0
    """Validation rows used (0: the whole split, as the paper; the CPU demo 64). A fixed subset, the same every
    time."""

    val_temperature: float = 0.5
    """Validation sampling temperature: 0 is greedy; the paper validates at 0.5, and so does the CPU demo: the
    tiny policy's greedy output hardly depends on the prompt, so greedy scores jump between all and nothing."""

    val_responses: int = 1
    """Responses sampled per validation row (1 with greedy decoding); the reported numbers are their mean. More
    responses make the estimate less noisy: on the CPU demo's 62 rows one response per row leaves a standard
    error of about 0.02 in reward, four (the demo's) about half that; the paper's 692 rows need only 1."""

    benchmarks: list[str] = field(default_factory=list)
    """Extra benchmarks to evaluate at each validation (names as ``scripts/evaluate.py --benchmarks`` takes)."""

    benchmark_root: str | None = None
    """Folder holding local benchmark copies (None: their Hugging Face ids)."""

    def __post_init__(self):
        _int_at_least("eval.", self, 0, "val_every", "val_samples")
        _int_at_least("eval.", self, 1, "val_responses")
        if not (isinstance(self.val_temperature, (int, float)) and 0 <= self.val_temperature < math.inf):
            raise ValueError(f"eval.val_temperature must be a finite number >= 0, got {self.val_temperature!r}")


@dataclass
class AlgoSettings(LossSettings):
    """GRPO batch shape and advantages (config section ``algo``), plus the loss settings it extends."""

    prompts_per_step: int = 512
    """Prompts per rollout batch (paper 512; the CPU demo 8); each gets ``rollout.group_size`` responses."""

    prompts_per_update: int = 128
    """Prompts per optimizer update (paper 128; the CPU demo 8): prompts_per_step / prompts_per_update optimizer
    steps per batch."""

    ppo_epochs: int = 1
    """Passes over each rollout batch (paper 1)."""

    unbiased_std: bool = True
    """Group std with Bessel's correction (paper code, verl, EasyR1); False: the biased std."""

    scale_advantages: bool = True
    """Divide by the group std (GRPO); False keeps only the mean-centring (Dr. GRPO)."""

    max_staleness: int = 0
    """One-step-off-policy rollout (``cluster/pipeline.py``): the pool generates the prompts of the next steps (up to
    this many ahead) while the learners train on this one; a trajectory generated by weights more than this many
    updates older than the learner's is never trained on (it is regenerated). 0: today's synchronous step (generate,
    then train). > 0 needs ``rollout.use_engine_logprobs=true``: the sampling policy's log-probs are the engine's."""

    filter_groups: bool = False
    """Dynamic sampling: drop prompt groups whose reward standard deviation is below ``filter_min_std`` (no advantage
    signal) and draw more prompts until the batch is full (``cluster/pipeline.py``)."""

    filter_min_std: float = 0.01
    """Dynamic sampling: groups whose rewards' (population) standard deviation is below this are dropped. The
    reward is continuous, so a filter on the group mean would let flat groups through; this one looks at the
    spread."""

    filter_max_draws: int = 3
    """Dynamic sampling: at most this many extra draws of prompts per step; a batch still short after them is filled
    with the dropped groups of largest spread (warned)."""

    def __post_init__(self):
        super().__post_init__()
        _int_at_least("algo.", self, 1, "prompts_per_step", "prompts_per_update", "ppo_epochs")
        _int_at_least("algo.", self, 0, "max_staleness", "filter_max_draws")
        if not (isinstance(self.filter_min_std, (int, float)) and 0 <= self.filter_min_std < math.inf):
            raise ValueError(f"algo.filter_min_std must be a finite number >= 0, got {self.filter_min_std!r}")
        if self.prompts_per_step % self.prompts_per_update:
            raise ValueError(
                f"algo.prompts_per_step ({self.prompts_per_step}) must be a multiple of algo.prompts_per_update "
                f"({self.prompts_per_update})"
            )

    def loss_settings(self) -> LossSettings:
        """The plain loss part, for the learner ranks."""
        return LossSettings(**{f.name: getattr(self, f.name) for f in fields(LossSettings)})


@dataclass
class TrainConfig:
    """The whole training config."""

    output_dir: str = "runs/spatialthinker"
    """Run folder: data, tiny model, checkpoints, metrics, MLflow file store, final model. On a cluster: an
    absolute path on storage every node can read."""

    steps: int = 75
    """GRPO steps to train (paper 75; the CPU demo 30; a resumed run continues up to this number)."""

    seed: int = 0
    """Seeds data order, sampling and initialisation."""

    save_every: int = 10
    """Checkpoint every this many steps (and at the end)."""

    keep_checkpoints: int = 2
    """Complete checkpoints kept; older ones are deleted after a newer one is published (0 keeps all)."""

    resume: str = "auto"
    """auto: continue from the newest complete checkpoint if any; never: refuse to reuse a run folder with
    checkpoints; or a checkpoint path (``<output_dir>/checkpoints/step_N``)."""

    experiment_name: str = "spatialthinker"
    """MLflow experiment."""

    run_name: str | None = None
    """MLflow run name (default: the output folder's name)."""

    mlflow_tracking_uri: str | None = None
    """MLflow tracking server; None: a file store under ``<output_dir>/mlruns``."""

    ray_address: str | None = None
    """Ray cluster to join; None: RAY_ADDRESS (set by ``ray job submit``), else a new local instance."""

    ray_num_cpus: int | None = None
    """CPUs of a new local Ray instance (None: max(4, cores))."""

    namespace: str = "spatialthinker"
    """Ray namespace of the run's named control actor."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    reward: RewardConfig = field(default_factory=RewardConfig)
    reward_workers: RewardWorkerSettings = field(default_factory=RewardWorkerSettings)
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)
    algo: AlgoSettings = field(default_factory=AlgoSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    def validate(self) -> TrainConfig:
        """Check every section (by constructing it again) and the rules that span sections."""
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                try:
                    setattr(self, f.name, type(value)(**{g.name: getattr(value, g.name) for g in fields(value)}))
                except ValueError as e:
                    msg = str(e)
                    raise ConfigError(msg if msg.startswith(f"{f.name}.") else f"{f.name}: {msg}") from None
        _need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer >= 1, got {self.steps!r}")
        _need(self.save_every >= 1, f"save_every must be >= 1, got {self.save_every!r}")
        _need(self.keep_checkpoints >= 0, f"keep_checkpoints must be >= 0, got {self.keep_checkpoints!r}")
        _need(
            self.resume in ("auto", "never") or Path(self.resume).exists(),
            f"resume must be 'auto', 'never' or an existing checkpoint folder, got {self.resume!r}",
        )
        _need(self.ray_num_cpus is None or self.ray_num_cpus >= 1, "ray_num_cpus must be >= 1")
        world, algo = self.learner.num_workers, self.algo
        _need(
            algo.prompts_per_update % world == 0,
            f"algo.prompts_per_update ({algo.prompts_per_update}) must be a multiple of learner.num_workers ({world}) "
            "so every rank trains on whole prompt groups",
        )
        _need(
            algo.max_staleness == 0 or self.rollout.use_engine_logprobs,
            f"algo.max_staleness={algo.max_staleness} needs rollout.use_engine_logprobs=true: with generation ahead "
            "of the learner, only the engine's log-probs are those of the weights that sampled",
        )
        _need(
            self.model.path is not None or self.rollout.engine != "vllm" or self.model.tiny_hidden_size in (128, 256),
            "model.tiny_hidden_size must give head_dim 64 or 128 for vLLM",
        )
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _coerce(value: Any, typ: str, key: str) -> Any:
    """Turn a YAML/override value into the field's declared type (annotations are strings here)."""
    optional = "None" in typ
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise ConfigError(f"{key} may not be null")
    if typ.startswith("list"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        return list(value)
    if typ.startswith("bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key} must be a boolean, got {value!r}")
    if typ.startswith("int"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(number)
    if typ.startswith("float"):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if typ.startswith("str"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _apply(obj: Any, data: Any, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(obj)}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in known:
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(known))}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            _apply(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, str(known[k].type), key))


def load_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the file at ``path`` (YAML or JSON), then ``key.sub=value`` overrides; validated."""
    cfg = TrainConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text())
        except (yaml.YAMLError, ValueError) as e:
            raise ConfigError(f"config file {p} could not be parsed: {str(e).splitlines()[0]}") from None
        _apply(cfg, data or {})
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        key, raw = override.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node: dict = {}
        cur = node
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        _apply(cfg, node)
    return cfg.validate()


def resolve_output_dir(output_dir: str) -> Path:
    """The absolute run folder. A relative path under ``ray job submit --working-dir`` would land in Ray's temporary
    copy of the working dir, which ``ray stop`` deletes: refuse it there."""
    p = Path(output_dir).expanduser()
    if not p.is_absolute() and "runtime_resources" in os.getcwd():
        raise ConfigError(
            f"output_dir {output_dir!r} is relative, and this job runs in Ray's temporary working directory "
            f"({os.getcwd()}); give an absolute path on storage every node can read"
        )
    return p.resolve()


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> ``{"a.b": value}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
