"""Rollout generation: the engines and the Ray actor that hosts one.

Two engines share one interface, ``generate(requests, n, *, temperature, top_p, max_new_tokens) -> list[PromptGroup]``,
the streamed weight update ``begin_weight_stream()``, ``load_weight_bucket(bucket)`` per bucket,
``finish_weight_stream()`` (see :mod:`actors.weight_sync`) and ``load_weights(state_dict)`` (a whole state dict):

* :class:`actors.vllm_engine.VLLMEngine`: the vLLM offline engine (CPU build here, GPU build on clusters); default.
* :class:`HFGenerateEngine`: transformers ``generate`` (``rollout.engine=hf``).

A temperature of 0 means greedy decoding (validation and evaluation).
"""

from __future__ import annotations

import logging
import time

import ray
import torch

from actors.common import setup_process
from actors.model import PromptEncoder, load_policy
from actors.policy import image_inputs
from actors.records import EncodedPrompt, PromptGroup, Response, RolloutRequest, ScoreRequest, WeightBucket
from actors.settings import RolloutSettings
from actors.weight_sync import from_wire

log = logging.getLogger(__name__)


def cut_forbidden(token_ids: list[int], forbidden: set[int], finish_reason: str) -> tuple[list[int], str]:
    """Engines suppress image/vision tokens; cut defensively at the first one so the learner never sees a stray
    image slot (the response then counts as truncated)."""
    for i, t in enumerate(token_ids):
        if t in forbidden:
            return list(token_ids[:i]), "length"
    return list(token_ids), finish_reason


class HFGenerateEngine:
    """transformers ``generate``: simple and exact, slower than vLLM; used with ``rollout.engine=hf``."""

    name = "hf"

    def __init__(self, model_path: str, settings: RolloutSettings, dtype: str, device: str = "cpu", seed: int = 0):
        self.settings = settings
        self.encoder = PromptEncoder(model_path)
        self.model = load_policy(model_path, dtype).to(device).eval()
        self.device = device
        self.forbidden = set(self.encoder.forbidden_ids)
        torch.manual_seed(seed)

    def begin_weight_stream(self) -> None:
        self._stream_loaded: set[str] = set()

    def load_weight_bucket(self, bucket: WeightBucket) -> int:
        with torch.no_grad():
            for name, t in from_wire(bucket):
                self.model.get_parameter(name).copy_(t)
                self._stream_loaded.add(name)
        return len(bucket.names)

    def finish_weight_stream(self) -> None:
        missing = [n for n, _ in self.model.named_parameters() if n not in self._stream_loaded]
        if missing:
            raise ValueError(f"streamed weight sync left {len(missing)} parameters unset: {missing[:5]}")

    def load_weights(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith("rotary_emb.inv_freq")]:
            raise ValueError(f"weight sync mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")

    def generate(
        self,
        requests: list[RolloutRequest],
        n: int,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
    ) -> list[PromptGroup]:
        s = self.settings
        temperature = s.temperature if temperature is None else temperature
        top_p = s.top_p if top_p is None else top_p
        max_new_tokens = s.max_new_tokens if max_new_tokens is None else max_new_tokens
        prompts = [self.encoder.encode(r.messages, r.images) for r in requests]
        if requests and requests[0].seed is not None:
            torch.manual_seed(requests[0].seed)  # reproducible given the same request batch
        work = [(i, prompts[i]) for i in range(len(requests)) for _ in range(n)]
        responses: list[list[Response]] = [[] for _ in requests]
        for start in range(0, len(work), s.batch_size):
            chunk = work[start : start + s.batch_size]
            for (i, _), resp in zip(
                chunk, self._generate_batch([p for _, p in chunk], temperature, top_p, max_new_tokens)
            ):
                responses[i].append(resp)
        return [PromptGroup(r.uid, r.index, p, rs, r.sample) for r, p, rs in zip(requests, prompts, responses)]

    def _generate_batch(self, prompts: list[EncodedPrompt], temperature, top_p, max_new_tokens) -> list[Response]:
        pad, eos = self.encoder.pad_token_id, self.encoder.eos_token_id
        width = max(len(p.input_ids) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for j, p in enumerate(prompts):  # left-pad for generation
            ids[j, width - len(p.input_ids) :] = torch.tensor(p.input_ids)
            attention[j, width - len(p.input_ids) :] = 1
        kwargs = {"input_ids": ids, "attention_mask": attention}
        kwargs.update(
            image_inputs(ids, [p.images for p in prompts if p.images is not None], self.model.config.image_token_id)
        )
        kwargs = {k: v.to(self.device) for k, v in kwargs.items()}
        # top_k=0: the full distribution, as vLLM samples it (transformers' default is top-50)
        sampling = {"temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {}
        with torch.no_grad():
            out = self.model.generate(
                **kwargs,
                **sampling,
                do_sample=temperature > 0,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                suppress_tokens=self.encoder.forbidden_ids,
                output_scores=True,
                return_dict_in_generate=True,
            )
        # the scores are the processed logits the tokens were sampled from (temperature applied, suppressed tokens at
        # -inf): their log-softmax at each sampled token is the sampling policy's log-prob, as vLLM reports it
        sampled = out.sequences[:, width:]
        steps = torch.stack(out.scores, 1).float().log_softmax(-1) if out.scores else None
        result = []
        for j in range(len(prompts)):
            tokens = sampled[j].tolist()
            reason = "stop" if eos in tokens else "length"
            if reason == "stop":
                tokens = tokens[: tokens.index(eos) + 1]
            tokens, reason = cut_forbidden(tokens, self.forbidden, reason)
            lps = None
            if steps is not None and temperature > 0:
                lps = steps[j, torch.arange(len(tokens)), sampled[j, : len(tokens)]].tolist()
            result.append(Response(tokens, self.encoder.decode(tokens), reason, lps))
        return result


def make_engine(model_path: str, settings: RolloutSettings, dtype: str, device: str = "cpu", seed: int = 0):
    """The engine ``settings.engine`` names, loaded from ``model_path`` in ``dtype``."""
    if settings.engine == "hf":
        return HFGenerateEngine(model_path, settings, dtype, device=device, seed=seed)
    # vllm stays an optional import: the hf engine and the tests of other roles must not need it
    from actors.vllm_engine import VLLMEngine

    return VLLMEngine(model_path, settings, dtype, seed=seed)


@ray.remote
class RolloutWorker:
    """One rollout engine in its own process; generates prompt groups and takes weight updates."""

    def __init__(self, worker_id: str, model_path: str, settings: RolloutSettings, dtype: str, seed: int = 0):
        self.worker_id = worker_id
        device = setup_process(settings.device, settings.torch_threads, settings.cpu_cores)
        self.engine = make_engine(model_path, settings, dtype, device=device, seed=seed)
        self.version = 0

    def ready(self) -> dict:
        return {"worker_id": self.worker_id, "engine": self.engine.name, "version": self.version}

    def update_weights(self, state: dict, version: int) -> int:
        """Load a state dict (passed as an ObjectRef, so Ray fetches it from the object store) into the engine."""
        self.engine.load_weights(state)
        self.version = int(version)
        return self.version

    def begin_weight_stream(self) -> bool:
        """Start a streamed weight update (object-store path); the buckets follow in order (one caller, so Ray runs
        these calls in the order they were sent)."""
        self.engine.begin_weight_stream()
        return True

    def load_weight_bucket(self, bucket: WeightBucket) -> int:
        """Load one :class:`WeightBucket` (passed as an ObjectRef: Ray fetches it from the object store)."""
        return self.engine.load_weight_bucket(bucket)

    def finish_weight_stream(self, version: int) -> int:
        """Finish a streamed update; from now on the engine samples with weights ``version``."""
        self.engine.finish_weight_stream()
        self.version = int(version)
        return self.version

    def weight_transfer(self, method: str, *args, **kwargs):
        """Calls into the engine's NCCL weight-transfer path (``rollout.weight_sync=nccl``)."""
        return getattr(self.engine, method)(*args, **kwargs)

    def set_version(self, version: int) -> int:
        """Record the weight version after an NCCL update (the object-store path records it in update_weights)."""
        self.version = int(version)
        return self.version

    def generate(self, requests: list[RolloutRequest], n: int, sampling: dict | None = None):
        """Returns ``(summary, group_0, ..., group_k)``; call with ``.options(num_returns=len(requests) + 1)`` so each
        prompt group becomes its own object and travels on by reference. ``sampling`` overrides temperature, top_p
        and max_new_tokens (validation)."""
        start, wall_start = time.perf_counter(), time.time()
        groups = self.engine.generate(requests, n, **(sampling or {}))
        seconds = time.perf_counter() - start
        for g in groups:
            g.policy_version, g.worker_id, g.seconds = self.version, self.worker_id, seconds
        summary = {
            "worker_id": self.worker_id,
            "groups": len(groups),
            "seconds": seconds,
            "version": self.version,
            "response_tokens": sum(g.response_tokens for g in groups),
            "truncated": sum(1 for g in groups for r in g.responses if not r.finished),
            "start": wall_start,
            "end": wall_start + seconds,
            "score": [ScoreRequest(g.uid, [r.text for r in g.responses], g.sample) for g in groups],
        }
        return (summary, *groups)
