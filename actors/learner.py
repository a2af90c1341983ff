"""DeepSpeed ZeRO-3 learner group and the frozen reference policy.

Each :class:`LearnerWorker` is one rank of a ``torch.distributed`` group
(NCCL on GPU, gloo on CPU with ``DS_ACCELERATOR=cpu``).  The driver calls
every rank with its shard of the batch; ZeRO-3 partitions parameters,
gradients and optimizer state across the ranks.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import ray

from actors.common import free_port, node_ip, setup_process


def ds_config(cfg: dict, world_size: int, micro_batch: int, grad_accum: int, device: str) -> dict:
    c = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": cfg.get("grad_clip", 1.0),
        "zero_optimization": {
            "stage": int(cfg.get("zero_stage", 3)),
            "overlap_comm": False,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": True,
            "stage3_param_persistence_threshold": int(cfg.get("param_persistence_threshold", 0)),
        },
        "zero_allow_untested_optimizer": True,
        "wall_clock_breakdown": False,
        "steps_per_print": 10**9,
    }
    if device == "cuda" and cfg.get("bf16", True):
        c["bf16"] = {"enabled": True}
    if cfg.get("offload_optimizer", False):
        c["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    return c


def _resolve(items):
    """Fetch ObjectRefs (in one ray.get) and leave plain values alone."""
    if items is None:
        return None
    refs = [i for i, x in enumerate(items) if isinstance(x, ray.ObjectRef)]
    out = list(items)
    if refs:
        for i, v in zip(refs, ray.get([items[i] for i in refs])):
            out[i] = v
    return out


class _PolicyMixin:
    def _logprobs(self, model, trajs, micro_batch):
        from actors.grpo import token_logprobs, unpad

        out = []
        for i in range(0, len(trajs), micro_batch):
            lp, mask = token_logprobs(model, trajs[i : i + micro_batch], self.pad_id, self.temperature)
            out.extend(unpad(lp, mask))
        return out


@ray.remote
class LearnerWorker(_PolicyMixin):
    def __init__(self, rank: int, world_size: int, model_path: str, cfg: dict, loss_cfg: dict, seed: int = 0):
        self.device = setup_process(cfg.get("device", "auto"), cfg.get("torch_threads"))
        self.rank, self.world_size = rank, world_size
        self.model_path, self.cfg, self.seed = model_path, cfg, seed
        self.loss_cfg = loss_cfg
        self.engine = None
        self.temperature = float(cfg.get("temperature", 1.0))

    def master_address(self) -> str:
        return f"{node_ip()}:{free_port()}"

    def init(self, master: str, samples_per_rank: int) -> dict:
        host, port = master.rsplit(":", 1)
        os.environ.update(
            MASTER_ADDR=host, MASTER_PORT=port, RANK=str(self.rank), WORLD_SIZE=str(self.world_size),
            LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
        )
        import deepspeed
        import torch

        from actors.model import PromptEncoder, load_policy

        torch.manual_seed(self.seed + self.rank)
        backend = "nccl" if self.device == "cuda" else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        self.pad_id = PromptEncoder(self.model_path).pad_token_id
        model = load_policy(self.model_path)
        if self.cfg.get("gradient_checkpointing", False):
            model.gradient_checkpointing_enable()
        self.micro_batch = int(self.cfg.get("micro_batch_size", 2))
        self.grad_accum = max(1, math.ceil(samples_per_rank / self.micro_batch))
        self.samples_per_rank = samples_per_rank
        opt = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=float(self.cfg.get("lr", 1e-5)),
            weight_decay=float(self.cfg.get("weight_decay", 0.0)),
            betas=(0.9, 0.99),
        )
        conf = ds_config(self.cfg, self.world_size, self.micro_batch, self.grad_accum, self.device)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=conf)
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in self.engine.module.parameters())
        return {"rank": self.rank, "params": int(n_params), "backend": backend, "zero_stage": conf["zero_optimization"]["stage"]}

    # -- inference -----------------------------------------------------------------
    def compute_logprobs(self, trajs: list[dict]):
        self.engine.eval()
        return self._logprobs(self.engine.module, trajs, self.micro_batch)

    # -- training ------------------------------------------------------------------
    def train_step(self, traj_chunks: list, ref_chunks: list | None, advantages: list) -> dict:
        """One GRPO update on this rank's shard.

        ``traj_chunks``: trajectory groups (lists, or ObjectRefs to them,
        fetched here straight from the object store); ``ref_chunks``: the
        reference log-probs per group (same form) or None when KL is off;
        ``advantages``: one list of floats per group.  Old log-probs are
        those of the current weights, taken before the first update."""
        import torch

        from actors.grpo import LossConfig, grpo_loss, repad, token_logprobs

        traj_chunks = _resolve(traj_chunks)
        if len(traj_chunks) != len(advantages):
            raise ValueError("one advantage list per trajectory group is needed")
        trajs = []
        for chunk, adv in zip(traj_chunks, advantages):
            if len(chunk) != len(adv):
                raise ValueError("advantage count differs from group size")
            for t, a in zip(chunk, adv):
                trajs.append(dict(t, advantage=float(a)))
        ref_logprobs = [x for c in _resolve(ref_chunks) for x in c] if ref_chunks is not None else None

        if len(trajs) != self.samples_per_rank:
            raise ValueError(f"rank {self.rank} expected {self.samples_per_rank} samples, got {len(trajs)}")
        t0 = time.time()
        lcfg = LossConfig(**self.loss_cfg)
        old = self.compute_logprobs(trajs)
        self.engine.train()
        epochs = int(self.cfg.get("ppo_epochs", 1))
        stats = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0}
        n = 0
        for _ in range(epochs):
            for i in range(0, len(trajs), self.micro_batch):
                mb = trajs[i : i + self.micro_batch]
                lp, mask = token_logprobs(self.engine, mb, self.pad_id, self.temperature, grad=True)
                old_p = repad(old[i : i + self.micro_batch], mask)
                ref_p = repad(ref_logprobs[i : i + self.micro_batch], mask) if ref_logprobs is not None else None
                adv = torch.tensor([t["advantage"] for t in mb], dtype=torch.float32, device=lp.device)
                loss, info = grpo_loss(lp, old_p, ref_p, adv, mask, lcfg)
                self.engine.backward(loss)
                self.engine.step()
                stats["loss"] += float(loss.detach())
                for k in ("kl", "clip_frac", "ratio_mean"):
                    stats[k] += info[k]
                n += 1
        out = {k: v / max(n, 1) for k, v in stats.items()}
        gn = self.engine.get_global_grad_norm()
        out["grad_norm"] = float(gn) if gn is not None else float("nan")
        out["lr"] = float(self.optimizer.param_groups[0]["lr"])
        out["train_seconds"] = time.time() - t0
        return out

    # -- weights -------------------------------------------------------------------
    def get_weights(self):
        """Gather the full (unpartitioned) state dict.  Collective: call on
        every rank; rank 0 returns the dict of CPU tensors, others None."""
        import deepspeed

        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if self.rank == 0:
                return {k: v.detach().to("cpu").clone() for k, v in self.engine.module.state_dict().items()}
        return None

    def save_checkpoint(self, directory: str, tag: str) -> str:
        """DeepSpeed checkpoint (sharded model + optimizer state); collective."""
        self.engine.save_checkpoint(directory, tag=tag)
        return str(Path(directory) / tag)

    def export_hf(self, out_dir: str) -> str | None:
        """Write the full policy as a plain transformers checkpoint (with the
        tokenizer and processor files).  Collective; rank 0 writes."""
        state = self.get_weights()
        if self.rank != 0:
            return None
        self._export(state, Path(out_dir))
        return out_dir

    def _export(self, state, out: Path):
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        self.engine.module.save_pretrained(str(out), state_dict=state)
        for f in os.listdir(self.model_path):
            if f.startswith(("tokenizer", "special_tokens", "preprocessor", "chat_template", "vocab", "merges")):
                shutil.copy(os.path.join(self.model_path, f), out / f)

    def load_checkpoint(self, directory: str, tag: str) -> bool:
        d = Path(directory) / tag
        if not d.is_dir() or not any(d.glob("*model_states.pt")):
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag} in {directory}")
        path, _ = self.engine.load_checkpoint(directory, tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag} in {directory}")
        return True

    def shutdown(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        return True


@ray.remote
class ReferencePolicy(_PolicyMixin):
    """Frozen copy of the initial policy; serves reference log-probs for the KL term."""

    def __init__(self, model_path: str, cfg: dict):
        self.device = setup_process(cfg.get("device", "auto"), cfg.get("torch_threads"))
        import torch

        from actors.model import PromptEncoder, load_policy

        self.pad_id = PromptEncoder(model_path).pad_token_id
        self.model = load_policy(model_path).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.temperature = float(cfg.get("temperature", 1.0))
        self.micro_batch = int(cfg.get("micro_batch_size", 4))
        torch.set_grad_enabled(False)

    def compute_logprobs(self, trajs: list[dict]):
        return self._logprobs(self.model, trajs, self.micro_batch)

    def ready(self) -> bool:
        return True
