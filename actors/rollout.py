"""Rollout generation: engines and the Ray actor that hosts one.

Two engines share one interface (``generate(requests, n, params)`` and
``load_weights(state_dict)``):

* :class:`HFGenerateEngine` -- ``transformers`` ``generate`` (CPU default).
* :class:`VLLMEngine` -- vLLM offline engine for GPUs.

A request is ``{"uid", "group", "messages", "images": [PIL.Image], "sample": {...}}``;
every trajectory that comes back carries the prompt token ids, the
response token ids and text, the image tensors the learner needs and the
request's ``sample`` metadata for the reward workers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import ray

from actors.common import setup_process


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("rollout temperature must be > 0 for GRPO sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


def stvqa_request(row: dict, uid: str, group: int) -> dict:
    """A rollout request for one STVQA dataset row: system prompt with the
    template, the image, the question with its options, and the fields the
    reward needs."""
    from rewards.template import SYSTEM_PROMPT

    return {
        "uid": uid,
        "group": group,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]},
        ],
        "images": [row["image"]],
        "sample": {k: row.get(k) for k in ("id", "question_type", "answer", "options", "gt_objects", "gt_relationships")},
    }


def _trajectory(req, k, enc, resp_ids, text, finished, engine, forbidden=()):
    bad = [i for i, t in enumerate(resp_ids) if t in forbidden]
    if bad:  # engines suppress these; cut defensively so the learner never sees stray image slots
        resp_ids, finished = list(resp_ids[: bad[0]]), False
    return {
        "uid": f"{req['uid']}#{k}",
        "group": req["group"],
        "prompt_ids": list(enc["input_ids"]),
        "response_ids": list(resp_ids),
        "response_text": text,
        "finished": bool(finished),
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": enc["image_grid_thw"],
        "sample": req.get("sample", {}),
        "engine": engine,
    }


class HFGenerateEngine:
    name = "hf"

    def __init__(self, model_path: str, device: str = "cpu", batch_size: int = 8, seed: int = 0):
        import torch

        from actors.model import PromptEncoder, load_policy

        self.encoder = PromptEncoder(model_path)
        self.model = load_policy(model_path).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)

    def load_weights(self, state: dict) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith("rotary_emb.inv_freq")]:
            raise ValueError(f"weight sync mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")

    def generate(self, requests: list[dict], n: int, sp: SamplingConfig) -> list[dict]:
        import torch

        work = []
        for req in requests:
            enc = self.encoder.encode(req["messages"], req.get("images", []))
            work.extend((req, k, enc) for k in range(n))
        out = []
        pad = self.encoder.pad_token_id
        eos = self.encoder.eos_token_id
        for i in range(0, len(work), self.batch_size):
            chunk = work[i : i + self.batch_size]
            L = max(len(e["input_ids"]) for _, _, e in chunk)
            ids = torch.full((len(chunk), L), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for j, (_, _, e) in enumerate(chunk):
                ids[j, L - len(e["input_ids"]) :] = torch.tensor(e["input_ids"])
                attn[j, L - len(e["input_ids"]) :] = 1
            kw = {"input_ids": ids.to(self.device), "attention_mask": attn.to(self.device)}
            pvs = [e["pixel_values"] for _, _, e in chunk if e["pixel_values"] is not None]
            if pvs:
                kw["pixel_values"] = torch.cat(pvs).to(self.device)
                kw["image_grid_thw"] = torch.cat([e["image_grid_thw"] for _, _, e in chunk if e["image_grid_thw"] is not None]).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(
                    **kw, do_sample=True, temperature=sp.temperature, top_p=sp.top_p,
                    max_new_tokens=sp.max_new_tokens, eos_token_id=eos, pad_token_id=pad,
                    suppress_tokens=self.encoder.forbidden_ids,
                )
            for j, (req, k, e) in enumerate(chunk):
                resp = gen[j, L:].tolist()
                finished = eos in resp
                if finished:
                    resp = resp[: resp.index(eos) + 1]
                out.append(_trajectory(req, k, e, resp, self.encoder.decode(resp), finished, self.name, self.encoder.forbidden_ids))
        return out


class VLLMEngine:
    """vLLM offline engine (GPU).  Weight sync loads the learner's gathered
    state dict through the model's ``load_weights``."""

    name = "vllm"

    def __init__(self, model_path: str, seed: int = 0, gpu_memory_utilization: float = 0.5, max_model_len: int = 4096, enforce_eager: bool = True):
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise RuntimeError(
                "rollout.engine='vllm' needs the vllm package on the rollout nodes (pip install vllm); "
                "use rollout.engine='hf' for transformers generate"
            ) from e
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        from vllm import LLM

        from actors.model import PromptEncoder

        self.encoder = PromptEncoder(model_path)
        self.llm = LLM(
            model=model_path, seed=seed, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, enforce_eager=enforce_eager, limit_mm_per_prompt={"image": 4},
        )

    def load_weights(self, state: dict) -> None:
        items = list(state.items())

        def _load(model):
            model.load_weights(weights=iter(items))
            return True

        self.llm.apply_model(_load)
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()

    def generate(self, requests: list[dict], n: int, sp: SamplingConfig) -> list[dict]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=n, temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_new_tokens,
            logit_bias={t: -100.0 for t in self.encoder.forbidden_ids},
        )
        encs, inputs = [], []
        for req in requests:
            encs.append(self.encoder.encode(req["messages"], req.get("images", [])))
            text = self.encoder.tokenizer.apply_chat_template(req["messages"], tokenize=False, add_generation_prompt=True)
            item = {"prompt": text}
            if req.get("images"):
                imgs = [im.convert("RGB") for im in req["images"]]
                item["multi_modal_data"] = {"image": imgs if len(imgs) > 1 else imgs[0]}
            inputs.append(item)
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        eos = self.encoder.eos_token_id
        res = []
        for req, enc, o in zip(requests, encs, outs):
            for k, c in enumerate(o.outputs):
                ids = list(c.token_ids)
                res.append(
                    _trajectory(req, k, enc, ids, c.text, c.finish_reason == "stop" or eos in ids, self.name, self.encoder.forbidden_ids)
                )
        return res


@ray.remote
class RolloutWorker:
    def __init__(self, worker_id: str, model_path: str, cfg: dict, seed: int = 0):
        self.worker_id = worker_id
        engine = cfg.get("engine", "hf")
        device = setup_process(cfg.get("device", "auto"), cfg.get("torch_threads"))
        if engine == "hf":
            self.engine = HFGenerateEngine(model_path, device=device, batch_size=int(cfg.get("batch_size", 8)), seed=seed)
        elif engine == "vllm":
            self.engine = VLLMEngine(
                model_path, seed=seed, gpu_memory_utilization=float(cfg.get("gpu_memory_utilization", 0.5)),
                max_model_len=int(cfg.get("max_model_len", 4096)),
            )
        else:
            raise ValueError(f"unknown rollout engine {engine!r}: use 'hf' or 'vllm'")
        self.sp = SamplingConfig(
            temperature=float(cfg.get("temperature", 1.0)),
            top_p=float(cfg.get("top_p", 1.0)),
            max_new_tokens=int(cfg.get("max_new_tokens", 64)),
        )
        self.version = 0

    def ready(self) -> dict:
        return {"worker_id": self.worker_id, "engine": self.engine.name, "version": self.version}

    def update_weights(self, state: dict, version: int) -> int:
        """``state`` arrives from the object store (the learner's ObjectRef)."""
        self.engine.load_weights(state)
        self.version = int(version)
        return self.version

    @ray.method(num_returns=2)
    def generate(self, requests: list[dict], n: int):
        """Returns (summary, trajectories) as two objects, so the caller can
        check the small summary and hand the trajectories on by reference."""
        t0 = time.time()
        trajs = self.engine.generate(requests, n, self.sp)
        dt = time.time() - t0
        for t in trajs:
            t["policy_version"] = self.version
            t["worker_id"] = self.worker_id
            t["gen_seconds"] = dt
        summary = {
            "worker_id": self.worker_id, "n": len(trajs), "seconds": dt, "version": self.version,
            "response_tokens": sum(len(t["response_ids"]) for t in trajs),
        }
        return summary, trajs
