"""Training configuration: nested dataclasses, loaded from YAML/JSON and
``key.sub=value`` overrides, validated up front with messages that name the
offending key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rewards.spatial import RewardConfig


class ConfigError(ValueError):
    pass


@dataclass
class ModelConfig:
    path: str | None = None  # None: build the tiny Qwen2.5-VL model into <output_dir>/tiny_model
    warm_start_steps: int = 700  # tiny model only: supervised format warm start on the train split
    warm_start_lr: float = 3e-3
    tiny_hidden_size: int = 64
    tiny_layers: int = 2


@dataclass
class DataConfig:
    dataset: str | None = None  # an STVQA dataset written by scripts/make_dataset.py
    vg_root: str | None = None  # or: a Visual Genome folder to synthesise it from
    synthetic_images: int = 24  # with neither: synthetic VG scenes
    split: str = "train"
    max_questions_per_image: int = 4
    max_scene_objects: int = 4  # size cap of the question-focused ground-truth subgraph
    shuffle: bool = True


@dataclass
class RolloutConfig:
    engine: str = "hf"  # "hf" (transformers generate) or "vllm"
    num_workers: int = 1
    min_workers: int = 1
    max_workers: int = 8
    group_size: int = 4
    temperature: float = 0.7  # the GPU example config samples at 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 8
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    device: str = "auto"
    torch_threads: int = 1
    gpu_memory_utilization: float = 0.5
    max_model_len: int = 4096
    max_task_retries: int = 3


@dataclass
class RewardSection(RewardConfig):
    """Reward weights (see rewards.spatial.RewardConfig) plus worker resources."""

    num_workers: int = 1
    num_cpus: float = 0.25

    def reward_kwargs(self) -> dict:
        d = asdict(self)
        d.pop("num_workers")
        d.pop("num_cpus")
        return d


@dataclass
class LearnerConfig:
    num_workers: int = 2
    micro_batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    zero_stage: int = 3
    ppo_epochs: int = 1
    bf16: bool = True
    gradient_checkpointing: bool = False
    offload_optimizer: bool = False
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    device: str = "auto"
    torch_threads: int = 1


@dataclass
class ReferenceConfig:
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    micro_batch_size: int = 4
    device: str = "auto"
    torch_threads: int = 1


@dataclass
class AlgoConfig:
    prompts_per_step: int = 4
    kl_beta: float = 0.01
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    token_mean: bool = True
    scale_advantages: bool = True


@dataclass
class TrainConfig:
    output_dir: str = "runs/spatialthinker-cpu"
    steps: int = 8
    seed: int = 0
    save_every: int = 4
    resume: str = "auto"  # "auto": continue from the latest checkpoint if any; "never"; or a checkpoint path
    experiment_name: str = "spatialthinker"
    run_name: str | None = None
    mlflow_tracking_uri: str | None = None  # None: file store under <output_dir>/mlruns
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray instance
    ray_num_cpus: int | None = None  # local Ray only
    namespace: str = "spatialthinker"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardSection = field(default_factory=RewardSection)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)

    # -- validation --------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)

        need(self.steps >= 1, "steps must be >= 1")
        need(self.save_every >= 1, "save_every must be >= 1")
        r, l, a = self.rollout, self.learner, self.algo
        need(r.engine in ("hf", "vllm"), f"rollout.engine must be 'hf' or 'vllm', got {r.engine!r}")
        need(r.group_size >= 2, "rollout.group_size must be >= 2 (GRPO needs a group to compare)")
        need(1 <= r.min_workers <= r.num_workers <= r.max_workers, "need 1 <= rollout.min_workers <= rollout.num_workers <= rollout.max_workers")
        need(r.temperature > 0, "rollout.temperature must be > 0")
        need(0 < r.top_p <= 1, "rollout.top_p must be in (0, 1]")
        need(r.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1")
        need(self.reward.num_workers >= 1, "reward.num_workers must be >= 1")
        try:
            RewardConfig(**self.reward.reward_kwargs())
        except ValueError as e:
            raise ConfigError(str(e).replace("reward config ", "reward.")) from None
        need(l.num_workers >= 1, "learner.num_workers must be >= 1")
        need(l.zero_stage in (0, 1, 2, 3), "learner.zero_stage must be 0-3")
        need(l.micro_batch_size >= 1, "learner.micro_batch_size must be >= 1")
        need(l.lr > 0, "learner.lr must be > 0")
        need(a.prompts_per_step >= 1, "algo.prompts_per_step must be >= 1")
        need(
            a.prompts_per_step % l.num_workers == 0,
            f"algo.prompts_per_step ({a.prompts_per_step}) must be a multiple of learner.num_workers ({l.num_workers}) "
            "so every rank trains on whole groups",
        )
        need(a.kl_beta >= 0, "algo.kl_beta must be >= 0")
        need(0 < a.clip_eps < 1, "algo.clip_eps must be in (0, 1)")
        need(self.resume in ("auto", "never") or Path(self.resume).exists(), f"resume must be 'auto', 'never' or an existing checkpoint, got {self.resume!r}")
        need(self.data.synthetic_images >= 1, "data.synthetic_images must be >= 1")
        for name in ("rollout", "learner", "reference"):
            d = getattr(self, name).device
            need(d in ("auto", "cpu", "cuda"), f"{name}.device must be auto, cpu or cuda, got {d!r}")
        return self

    @property
    def samples_per_step(self) -> int:
        return self.algo.prompts_per_step * self.rollout.group_size

    def to_dict(self) -> dict:
        return asdict(self)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    t = str(typ)
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"{key} may not be null")
    if "bool" in t and isinstance(value, str):
        low = value.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be a boolean, got {value!r}")
    if "bool" in t:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be a boolean, got {value!r}")
        return value
    if "int" in t and "float" not in t:
        if isinstance(value, str) and value.lower() in ("none", "null") and "None" in t:
            return None
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(f)
    if "float" in t:
        if isinstance(value, str) and value.lower() in ("none", "null") and "None" in t:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if "str" in t:
        if isinstance(value, str) and value.lower() in ("none", "null") and "None" in t:
            return None
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(obj)}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in known:
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(known))}")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _apply(cur, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, known[k].type, key))


def load_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    cfg = TrainConfig()
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} not found")
        text = p.read_text()
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as e:
            raise ConfigError(f"config file {p} could not be parsed: {e}") from e
        _apply(cfg, data)
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key.sub=value")
        k, v = ov.split("=", 1)
        parts = k.strip().split(".")
        node: dict = {}
        cur = node
        for part in parts[:-1]:
            cur[part] = {}
            cur = cur[part]
        try:
            import yaml

            val = yaml.safe_load(v) if v.strip() else v
        except Exception:
            val = v
        cur[parts[-1]] = val
        _apply(cfg, node)
    return cfg.validate()


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
