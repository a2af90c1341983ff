"""Typed settings of each actor role. Every default lives here, once; ``cluster/config.py`` composes these
sections into the training config and validates them by constructing them (``__post_init__``), so a bad value
fails before any actor starts, with a message naming its ``section.key``."""

from __future__ import annotations

import math
from dataclasses import dataclass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _positive(section: str, obj, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        _check(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
            f"{section}.{name} must be a finite number > 0, got {v!r}",
        )


def _non_negative(section: str, obj, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        _check(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
            f"{section}.{name} must be a finite number >= 0, got {v!r}",
        )


def _check_count(section: str, obj, *names: str) -> None:
    """Integers >= 0 (0 switches the feature off)."""
    for name in names:
        v = getattr(obj, name)
        _check(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            f"{section}.{name} must be an integer >= 0, got {v!r}",
        )


def parse_cpu_list(text: str) -> list[int]:
    """A Linux CPU list (``taskset -c`` / ``/sys/.../cpulist`` syntax: ``0``, ``0-3``, ``0,2,4-5``) as sorted core
    ids; the empty string is no list. Raises ``ValueError`` naming the bad part."""
    cores: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())) or (sep and int(hi) < int(lo)):
            raise ValueError(f"{part!r} is not a core id or range such as 0, 2-3")
        cores.update(range(int(lo), int(hi if sep else lo) + 1))
    return sorted(cores)


def _check_cores(section: str, obj) -> None:
    try:
        parse_cpu_list(obj.cpu_cores)
    except ValueError as e:
        raise ValueError(f"{section}.cpu_cores: {e} (a CPU list such as '0-3,6', or '' for no pinning)") from None


DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is float32 on CPU (gloo has no bf16 all-reduce worth using) and bfloat16 on GPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device == "cuda" else "float32"


@dataclass
class ModelSettings:
    """The policy checkpoint (config section ``model``)."""

    path: str | None = "Qwen/Qwen2.5-VL-3B-Instruct"
    """A transformers checkpoint directory or hub id of a Qwen2.5-VL model (paper: Qwen/Qwen2.5-VL-3B-Instruct or
    -7B-Instruct). None: build the tiny Qwen2.5-VL-architecture model under ``<output_dir>/tiny_model`` (the CPU
    demo)."""

    dtype: str = "auto"
    """Weights dtype of learner, reference and rollout engine (they must agree for GRPO's ratio):
    auto | float32 | bfloat16 | float16. auto: float32 on CPU, bfloat16 on GPU."""

    warm_start_steps: int = 200
    """Tiny model only: supervised format warm-start steps on the train split (a stand-in for instruction
    tuning; recipe in ``actors/warmstart.py``). 200 (under a minute on 2 cores) leave the held-out format at about
    0.35 at the validation temperature, which is the room GRPO improves on; with 300 it is already about 0.65 and
    30 GRPO steps gain only about +0.05 in held-out reward (measured over 248 validation responses)."""

    warm_start_lr: float = 3e-3
    """Tiny model only: warm-start peak learning rate (warmed up, then cosine-decayed)."""

    warm_start_batch_size: int = 8
    """Tiny model only: warm-start batch size."""

    tiny_hidden_size: int = 128
    """Tiny model: hidden size (2 heads of 64: vLLM's CPU attention supports head_dim 64 and 128)."""

    tiny_layers: int = 2
    """Tiny model: decoder layers."""

    tiny_tie_word_embeddings: bool = False
    """Tiny model: tie ``lm_head`` to the input embedding, as Qwen2.5-VL-3B does (7B does not). The weight sync
    sends a tied pair once, under the embedding's name (see ``actors/weight_sync.py``)."""

    def __post_init__(self):
        _check(self.dtype in DTYPES, f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        _check(
            isinstance(self.warm_start_steps, int) and self.warm_start_steps >= 0,
            f"model.warm_start_steps must be an integer >= 0, got {self.warm_start_steps!r}",
        )
        _positive("model", self, "warm_start_lr", "warm_start_batch_size", "tiny_layers")
        _check(
            self.tiny_hidden_size in (128, 256),
            f"model.tiny_hidden_size must be 128 or 256 (head_dim 64 or 128 for vLLM), got {self.tiny_hidden_size!r}",
        )


@dataclass
class RolloutSettings:
    """Rollout workers and their engine (config section ``rollout``)."""

    engine: str = "vllm"
    """Generation engine: ``vllm`` (the vLLM offline engine; CPU build here, GPU build on clusters) or ``hf``
    (transformers ``generate``)."""

    num_workers: int = 1
    """Rollout workers started with the job (change while running with scripts/scale_rollout.py)."""

    min_workers: int = 1
    """The pool refills to at least this many workers when workers die."""

    max_workers: int = 8
    """Upper bound of the pool; a larger request is capped and the cap is reported."""

    group_size: int = 8
    """Responses sampled per prompt (GRPO's n; paper 8)."""

    temperature: float = 1.0
    """Sampling temperature (paper 1.0; the tiny CPU demo learns faster at 0.7). The learner and reference score
    tokens at this temperature too."""

    top_p: float = 1.0
    """Nucleus sampling threshold (paper 1.0)."""

    max_new_tokens: int = 2048
    """Response length limit in tokens (paper 2048; the CPU demo 160). A response cut here is recorded as
    truncated."""

    max_model_len: int = 8192
    """Prompt + response token limit of the engine (paper prompt 6144 + response 2048; the CPU demo 1024)."""

    batch_size: int = 16
    """hf engine: sequences per ``generate`` call."""

    use_engine_logprobs: bool = False
    """Use the engine's sampled-token log-probs as GRPO's old log-probs (saves a learner forward pass over the
    batch, about a quarter of a CPU demo step; the CPU demo does); False: the learner computes them before its first
    update (as the paper's code does). The engine/learner agreement ``rollout/logprob_diff_mean`` is measured
    either way: against the learner's old log-probs, or on each rank's first forward pass before any update."""

    weight_sync: str = "object_store"
    """How new weights reach the engines: ``object_store`` (rank 0's gathered state dict through the Ray object
    store into the engine's in-place reload; works on CPU and across nodes) or ``nccl`` (vLLM's weight-transfer
    API, NCCL broadcast from learner rank 0 to all engines; GPU only)."""

    weight_sync_bucket_mb: int = 512
    """Weight sync (both paths): the learner gathers, sends and releases its parameters in buckets of about this
    size; no learner rank holds more than one bucket beyond its ZeRO-3 shard during a sync."""

    weight_sync_timeout_s: float = 600.0
    """A weight sync must finish within this time. Engines that have not acknowledged it by then are dropped and
    replaced (the replacements start from the current weights); the learner is never left waiting on them."""

    tensor_parallel_size: int = 1
    """vLLM tensor parallelism: GPUs per engine (the paper's code runs vLLM with 2). Each engine gets one Ray
    placement-group bundle of ``num_gpus * tensor_parallel_size`` GPUs on one node, and the NCCL weight sync gives
    each engine that many ranks. vLLM's CPU build takes 1."""

    gpu_memory_utilization: float = 0.5
    """vllm on GPU: fraction of GPU memory the engine may take."""

    cpu_kv_cache_gb: int = 1
    """vllm on CPU: KV-cache space in GiB (``VLLM_CPU_KVCACHE_SPACE``; vLLM's own default wants 92% of RAM)."""

    num_cpus: float = 0.5
    """Ray CPUs per rollout worker."""

    num_gpus: float = 0.0
    """Ray GPUs per rollout worker (1 for a vLLM engine on its own GPU)."""

    device: str = "auto"
    """auto | cpu | cuda."""

    torch_threads: int = 1
    """torch intra-op threads in the worker process (vllm on CPU: OpenMP threads of the engine)."""

    cpu_cores: str = ""
    """CPU cores this role's processes are pinned to (``os.sched_setaffinity``, Linux; ``taskset -c`` syntax such as
    ``0-3,6``), inherited by the processes they start (vLLM's engine core). Ray's ``num_cpus`` only reserves logical
    CPUs, so on a CPU node pools without pinning contend for the same cores. Empty: no pinning."""

    max_task_retries: int = 3
    """A prompt group whose worker died is re-queued on another worker at most this many times."""

    placement_timeout_s: float = 120.0
    """A new worker that Ray cannot place (or that does not become ready) within this time is dropped from the
    request and reported, and training goes on with the workers it has."""

    def __post_init__(self):
        _check(self.engine in ("hf", "vllm"), f"rollout.engine must be 'hf' or 'vllm', got {self.engine!r}")
        _check(
            self.weight_sync in ("object_store", "nccl"),
            f"rollout.weight_sync must be 'object_store' or 'nccl', got {self.weight_sync!r}",
        )
        _check(self.device in DEVICES, f"rollout.device must be auto, cpu or cuda, got {self.device!r}")
        for name in (
            "num_workers",
            "min_workers",
            "max_workers",
            "group_size",
            "max_new_tokens",
            "max_model_len",
            "batch_size",
            "torch_threads",
            "weight_sync_bucket_mb",
            "cpu_kv_cache_gb",
            "tensor_parallel_size",
        ):
            v = getattr(self, name)
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                f"rollout.{name} must be an integer >= 1, got {v!r}",
            )
        _check(
            1 <= self.min_workers <= self.num_workers <= self.max_workers,
            "rollout needs 1 <= min_workers <= num_workers <= max_workers, got "
            f"{self.min_workers}, {self.num_workers}, {self.max_workers}",
        )
        _check(
            self.group_size >= 2,
            f"rollout.group_size must be >= 2 (GRPO compares within a group), got {self.group_size}",
        )
        _positive("rollout", self, "temperature", "placement_timeout_s", "weight_sync_timeout_s")
        _check(
            self.tensor_parallel_size == 1 or (self.engine == "vllm" and self.device == "cuda"),
            f"rollout.tensor_parallel_size={self.tensor_parallel_size} needs rollout.engine=vllm on "
            f"rollout.device=cuda (vLLM's CPU build and the hf engine take 1; got engine={self.engine!r}, "
            f"device={self.device!r})",
        )
        _check(0 < self.top_p <= 1, f"rollout.top_p must be in (0, 1], got {self.top_p!r}")
        _check(
            0 < self.gpu_memory_utilization <= 1,
            f"rollout.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}",
        )
        _non_negative("rollout", self, "num_cpus", "num_gpus", "max_task_retries")
        _check_cores("rollout", self)


@dataclass
class LearnerSettings:
    """The DeepSpeed learner group (config section ``learner``)."""

    num_workers: int = 2
    """Learner ranks (one per GPU on a cluster); ZeRO partitions parameters, gradients and optimizer state."""

    micro_batch_size: int = 8
    """Sequences per forward/backward pass on one rank (ZeRO-3 gathers the parameters once per pass, so on the CPU
    demo 8 takes half the gathers of 4; the paper does not state it, the 3B/7B presets use 2)."""

    lr: float = 1e-6
    """AdamW learning rate, constant (paper 1e-6 for 3B/7B; the tiny CPU demo model needs far more, 3e-4: 1e-4
    barely moves it in 30 steps, 5e-4 learns faster but sometimes collapses late in the run)."""

    weight_decay: float = 0.01
    """AdamW weight decay (paper 0.01)."""

    beta1: float = 0.9
    """AdamW beta1 (paper 0.9)."""

    beta2: float = 0.999
    """AdamW beta2 (paper 0.999)."""

    adam_eps: float = 1e-8
    """AdamW epsilon."""

    grad_clip: float = 1.0
    """Global gradient-norm clip (paper 1.0)."""

    zero_stage: int = 3
    """DeepSpeed ZeRO stage 0-3."""

    param_persistence_threshold: int = 0
    """ZeRO-3: parameters with fewer elements than this stay unpartitioned (0 partitions all, which the tiny
    model needs so that 2 ranks really shard it)."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (long sequences on GPU)."""

    offload_optimizer: bool = False
    """ZeRO: keep optimizer state in CPU memory."""

    grad_accum_dtype: str = "fp32"
    """bf16 training: dtype DeepSpeed accumulates gradients in across micro-batches (``data_types.grad_accum_dtype``):
    fp32 | bf16. bf16 rounds every partial sum to 8 mantissa bits, over hundreds of micro-batches per optimizer
    step at the paper's shapes; fp32 costs 2 bytes per parameter / ranks more memory."""

    overlap_comm: bool = False
    """ZeRO: overlap gradient reduction with the backward pass (DeepSpeed's stage-3 default; GPU presets turn it on;
    it needs reduce buckets of ``reduce_bucket_size`` elements in flight)."""

    zero_init: bool = True
    """ZeRO-3: build the model under ``deepspeed.zero.Init`` (through transformers' ``HfDeepSpeedConfig``), so each
    rank only ever holds its partition instead of the whole model first. The model is loaded in the training dtype
    either way."""

    max_tokens_per_micro_batch: int = 0
    """Token-budget micro-batches: the sequences of a mini-batch are packed by length (first-fit decreasing) into
    forward/backward passes of at most this many padded tokens (prompt + response, image tokens included); a longer
    sequence gets a pass of its own, with a warning. 0: fixed count, ``micro_batch_size`` sequences per pass. Either
    way the loss is normalised by the whole mini-batch's token or sequence count."""

    logprob_chunk_tokens: int = 512
    """Response tokens projected onto the vocabulary and log-softmaxed at a time (``actors.policy.token_logprobs``);
    at Qwen2.5-VL's 151,936-token vocabulary one float32 chunk of 512 is 311 MB. 0: the full-vocabulary path
    (float32 logits at every position; for comparison only)."""

    num_cpus: float = 0.5
    """Ray CPUs per rank."""

    num_gpus: float = 0.0
    """Ray GPUs per rank."""

    device: str = "auto"
    """auto | cpu | cuda."""

    torch_threads: int = 1
    """torch intra-op threads per rank."""

    cpu_cores: str = ""
    """CPU cores this role's processes are pinned to (``os.sched_setaffinity``, Linux; ``taskset -c`` syntax such as
    ``0-3,6``), inherited by the processes they start (vLLM's engine core). Ray's ``num_cpus`` only reserves logical
    CPUs, so on a CPU node pools without pinning contend for the same cores. Empty: no pinning."""

    def __post_init__(self):
        _check(self.device in DEVICES, f"learner.device must be auto, cpu or cuda, got {self.device!r}")
        _check(self.zero_stage in (0, 1, 2, 3), f"learner.zero_stage must be 0-3, got {self.zero_stage!r}")
        for name in ("num_workers", "micro_batch_size", "torch_threads"):
            v = getattr(self, name)
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                f"learner.{name} must be an integer >= 1, got {v!r}",
            )
        _positive("learner", self, "lr", "grad_clip", "adam_eps")
        _non_negative("learner", self, "weight_decay", "num_cpus", "num_gpus", "param_persistence_threshold")
        _check_cores("learner", self)
        _check_count("learner", self, "logprob_chunk_tokens", "max_tokens_per_micro_batch")
        _check(
            self.grad_accum_dtype in ("fp32", "bf16"),
            f"learner.grad_accum_dtype must be fp32 or bf16, got {self.grad_accum_dtype!r}",
        )
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            _check(0 <= v < 1, f"learner.{name} must be in [0, 1), got {v!r}")


@dataclass
class ReferenceSettings:
    """The frozen reference policy actor (config section ``reference``)."""

    micro_batch_size: int = 8
    """Sequences per forward pass."""

    max_tokens_per_micro_batch: int = 0
    """Token-budget passes as ``learner.max_tokens_per_micro_batch`` (within one prompt group); 0: fixed count,
    ``micro_batch_size`` sequences per pass."""

    logprob_chunk_tokens: int = 512
    """Response tokens log-softmaxed at a time, as ``learner.logprob_chunk_tokens``."""

    num_cpus: float = 0.25
    """Ray CPUs."""

    num_gpus: float = 0.0
    """Ray GPUs."""

    device: str = "auto"
    """auto | cpu | cuda."""

    torch_threads: int = 1
    """torch intra-op threads."""

    cpu_cores: str = ""
    """CPU cores this role's processes are pinned to (``os.sched_setaffinity``, Linux; ``taskset -c`` syntax such as
    ``0-3,6``), inherited by the processes they start (vLLM's engine core). Ray's ``num_cpus`` only reserves logical
    CPUs, so on a CPU node pools without pinning contend for the same cores. Empty: no pinning."""

    colocate_with_learner: bool = False
    """Compute reference log-probs on the learner ranks (a frozen copy of the initial weights, ZeRO-3 sharded like
    the policy, no optimizer state) instead of in a reference actor with resources of its own; ``num_cpus``,
    ``num_gpus`` and ``device`` are then unused."""

    def __post_init__(self):
        _check(self.device in DEVICES, f"reference.device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("micro_batch_size", "torch_threads"):
            v = getattr(self, name)
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                f"reference.{name} must be an integer >= 1, got {v!r}",
            )
        _non_negative("reference", self, "num_cpus", "num_gpus")
        _check_cores("reference", self)
        _check_count("reference", self, "logprob_chunk_tokens", "max_tokens_per_micro_batch")


@dataclass
class RewardWorkerSettings:
    """Reward worker pool resources (config section ``reward``, beside the reward rules)."""

    num_workers: int = 1
    """Reward worker actors; prompt groups are spread over them."""

    num_cpus: float = 0.25
    """Ray CPUs per reward worker."""

    def __post_init__(self):
        _check(
            isinstance(self.num_workers, int) and self.num_workers >= 1,
            f"reward.num_workers must be an integer >= 1, got {self.num_workers!r}",
        )
        _non_negative("reward", self, "num_cpus")
