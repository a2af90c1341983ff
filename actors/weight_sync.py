"""Streamed weight sync: the learner's parameters leave it one bucket at a time.

Both sync paths (``rollout.weight_sync``) read the learner's weights through :class:`BucketSource`:

* the bucket plan (:func:`plan_buckets`) is computed from parameter metadata only (ZeRO-3 keeps the full shape in
  ``ds_shape``), so every rank builds the same plan without gathering anything;
* :meth:`BucketSource.buckets` gathers ONE bucket at a time (``deepspeed.zero.GatheredParameters`` over that
  bucket's parameters, a collective: every rank iterates the same plan in lockstep), hands it out, and releases it
  when the caller asks for the next one; no rank holds more than one bucket beyond its shard;
* names come from ``named_parameters()``, not ``state_dict()``: a tied ``lm_head.weight`` (Qwen2.5-VL-3B ties it to
  the input embedding) is an alias of ``model.language_model.embed_tokens.weight`` and is sent once, under the
  canonical name; vLLM skips the alias and requires the canonical tensor (vllm/model_executor/models/utils.py:202-213,
  491-503), and vLLM's own ``ModuleSource`` iterates ``named_parameters()`` too.

Object-store path: learner rank 0 turns each gathered bucket into a :class:`actors.records.WeightBucket` (byte views
of the tensors, serialised zero-copy by Ray) that becomes its own object; engines load each bucket as it arrives
(vLLM's layerwise in-place reload, started once and finished after the last bucket) and the driver releases a bucket
once every engine has it. NCCL path: :func:`vllm_weight_source` wraps the same source as vLLM's ``WeightSource``,
and vLLM's packed producer broadcasts it from rank 0 while the other ranks iterate it to take part in the gathers.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from actors.records import WeightBucket

SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
"""torch dtype -> safetensors header dtype, for the engine-side bucket file."""


@dataclass(frozen=True)
class ParamInfo:
    """One parameter as the sync sends it."""

    name: str
    """Name under ``named_parameters()`` (HF checkpoint naming; tied aliases left out)."""
    shape: tuple[int, ...]
    """Full shape (ZeRO-3: ``ds_shape``, not the partition's)."""
    dtype: torch.dtype
    """Wire dtype (the learner's parameter dtype)."""

    @property
    def nbytes(self) -> int:
        return math_prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def math_prod(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def sync_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters a sync sends, in order: ``named_parameters()`` (each tensor once; a tied output embedding is
    left out in favour of the input embedding it aliases)."""
    return list(module.named_parameters())


def param_info(name: str, p: torch.Tensor) -> ParamInfo:
    shape = getattr(p, "ds_shape", None)
    return ParamInfo(name, tuple(int(s) for s in (shape if shape is not None else p.shape)), p.dtype)


def plan_buckets(params: Iterable[tuple[str, int]], nbytes: int) -> list[list[str]]:
    """Names per bucket, in order, for ``(name, bytes)`` pairs: a bucket closes after the tensor that takes it past
    ``nbytes``, as vLLM's packed broadcast cuts its buffers (vllm/distributed/weight_transfer/packed_tensor.py:126),
    so one tensor larger than ``nbytes`` is a bucket of its own."""
    if nbytes < 1:
        raise ValueError(f"bucket size must be >= 1 byte, got {nbytes}")
    buckets, cur, size = [], [], 0
    for name, n in params:
        cur.append(name)
        size += int(n)
        if size > nbytes:
            buckets.append(cur)
            cur, size = [], 0
    if cur:
        buckets.append(cur)
    return buckets


@contextlib.contextmanager
def _gathered(params: list[torch.nn.Parameter]):
    """ZeRO-3: gather these parameters on every rank (collectives) for the ``with`` block; a no-op for parameters
    DeepSpeed does not partition. One gather per parameter: DeepSpeed gathers a single parameter straight into its
    full-size buffer, while a coalesced gather of many goes through a flat buffer as large as all of them and then
    copies out (twice the bucket at the peak; deepspeed/runtime/zero/partition_parameters.py:1343-1362, 1598)."""
    zero = [p for p in params if hasattr(p, "ds_id")]
    if not zero:
        yield
        return
    import deepspeed  # learner ranks only

    with contextlib.ExitStack() as stack:
        for p in zero:
            stack.enter_context(deepspeed.zero.GatheredParameters([p], modifier_rank=None))
        yield


class BucketSource:
    """The learner's parameters, gathered and handed out one bucket at a time.

    ``module``: the (DeepSpeed-wrapped model's) module; ``bucket_bytes``: bucket size. Every rank of a ZeRO-3 group
    must iterate :meth:`buckets` (or ``iter(source)``) to the end, in lockstep: each bucket's gather is a collective.
    """

    def __init__(self, module: torch.nn.Module, bucket_bytes: int):
        self.params = dict(sync_parameters(module))
        self.info = [param_info(n, p) for n, p in self.params.items()]
        self.plan = plan_buckets(((i.name, i.nbytes) for i in self.info), bucket_bytes)
        self.bucket_bytes = bucket_bytes

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.info)

    def buckets(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """One list of ``(name, full tensor)`` per bucket. The tensors are the gathered parameters themselves: valid
        until the next bucket is asked for (they are released then); copy what must outlive that."""
        for names in self.plan:
            params = [self.params[n] for n in names]
            with _gathered(params):
                bucket = [(n, p.data) for n, p in zip(names, params)]
                yield bucket
                bucket.clear()  # a caller still holding the list must not keep the gathered storage alive

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for bucket in self.buckets():
            while bucket:
                yield bucket.pop(0)


def to_wire(bucket: list[tuple[str, torch.Tensor]], index: int, count: int, version: int) -> WeightBucket:
    """A gathered bucket as a :class:`WeightBucket`: byte views of the tensors (host copies on GPU), which Ray
    serialises out of band, straight into the object store."""
    arrays, dtypes, shapes = [], [], []
    for _, t in bucket:
        t = t.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        arrays.append(t.contiguous().reshape(-1).view(torch.uint8).numpy())
        dtypes.append(str(t.dtype).removeprefix("torch."))
        shapes.append(tuple(int(s) for s in t.shape))
    return WeightBucket([n for n, _ in bucket], dtypes, shapes, arrays, index, count, version)


def from_wire(bucket: WeightBucket) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` pairs of a bucket, each tensor a private copy."""
    for name, dtype, shape, data in zip(bucket.names, bucket.dtypes, bucket.shapes, bucket.data):
        yield name, torch.from_numpy(np.array(data, copy=True)).view(getattr(torch, dtype)).reshape(shape)


def write_safetensors(bucket: WeightBucket, path: str) -> int:
    """Write a bucket as a safetensors file straight from its byte arrays (one copy, no tensor in between).
    Returns the bytes written."""
    header, offset = {}, 0
    for name, dtype, shape, data in zip(bucket.names, bucket.dtypes, bucket.shapes, bucket.data):
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[getattr(torch, dtype)],
            "shape": list(shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        offset += data.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for data in bucket.data:
            f.write(memoryview(data))
    return 8 + len(raw) + offset


def vllm_weight_source(source: BucketSource, device: str = "cuda"):
    """``source`` as vLLM's ``WeightSource`` (NCCL path): metadata from the plan, iteration bucket by bucket, each
    tensor moved to ``device`` for the broadcast (a no-op for a GPU learner's gathered parameters)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class StreamedSource(WeightSource):
        def metadata(self):
            return [ParamMeta(i.name, i.dtype, i.shape) for i in source.info]

        def __iter__(self):
            for name, t in source:
                yield name, t.to(device, non_blocking=True)
                del t  # released before the next bucket is gathered

    return StreamedSource()


__all__ = [
    "BucketSource",
    "ParamInfo",
    "from_wire",
    "plan_buckets",
    "sync_parameters",
    "to_wire",
    "vllm_weight_source",
    "write_safetensors",
]
