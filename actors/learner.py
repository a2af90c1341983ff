"""The DeepSpeed ZeRO-3 learner group and the frozen reference policy.

Each :class:`LearnerWorker` is one rank of a ``torch.distributed`` group (NCCL on GPU, gloo on CPU with
``DS_ACCELERATOR=cpu``); ZeRO-3 partitions parameters, gradients and optimizer state across the ranks.
:class:`LearnerGroup` starts the ranks, shards every batch of prompt groups across them (whole groups per rank, so
each rank can score and update its groups on its own) and fans each call out; the driver never slices shards.

One rollout batch is used in two calls:

1. ``prepare``: each rank fetches its prompt groups and their reference log-probs from the object store and computes
   the old log-probs (before any update), the engine/learner log-prob agreement and, for ``kl_in=reward``, the
   sequence KL. Everything stays on the rank; only small numbers return.
2. ``update``: with the driver's advantages, ``ppo_epochs`` passes over the batch in mini-batches of
   ``prompts_per_update`` prompt groups, one optimizer step per mini-batch (the paper: 512 prompts per rollout
   batch, 128 per update: 4 steps).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from ray.exceptions import RayActorError

from actors import grpo
from actors.common import free_port, node_ip, setup_process
from actors.model import PromptEncoder, load_policy
from actors.policy import (
    Sequence,
    aligned_micro_batches,
    group_logprobs,
    repad,
    sequence_length,
    sequence_logprobs,
    sequences,
    token_logprobs,
)
from actors.records import GroupLogprobs, PromptGroup, UpdateStats
from actors.settings import LearnerSettings, ReferenceSettings

TOKENIZER_FILES = ("tokenizer", "special_tokens", "preprocessor", "chat_template", "vocab", "merges")


@dataclass
class BatchPlan:
    """How one rollout batch is cut into optimizer steps, over all ranks together (what the driver states);
    :meth:`per_rank` gives each rank's share."""

    groups_per_step: int
    """Prompt groups in one rollout batch (``algo.prompts_per_step``)."""
    groups_per_update: int
    """Prompt groups in one optimizer step, all ranks together (``algo.prompts_per_update``)."""
    group_size: int
    """Responses per prompt group (n)."""
    ppo_epochs: int
    """Passes over the rollout batch."""

    def per_rank(self, world: int) -> RankPlan:
        """Each of ``world`` ranks' share (the config checks that both counts divide by the rank count)."""
        return RankPlan(
            self.groups_per_step // world, self.groups_per_update // world, self.group_size, self.ppo_epochs
        )


@dataclass
class RankPlan:
    """One rank's share of a :class:`BatchPlan`; the same on every rank."""

    groups_per_rank: int
    """Prompt groups this rank trains on per rollout batch (prompts_per_step / ranks)."""
    groups_per_update: int
    """Prompt groups this rank takes in one mini-batch (prompts_per_update / ranks)."""
    group_size: int
    """Responses per prompt group (n)."""
    ppo_epochs: int
    """Passes over the rollout batch."""

    @property
    def updates_per_epoch(self) -> int:
        return self.groups_per_rank // self.groups_per_update

    @property
    def sequences_per_update(self) -> int:
        return self.groups_per_update * self.group_size


@dataclass
class PrepareInfo:
    """What ``prepare`` reports to the driver for one rank's groups."""

    sequence_kl: list[list[float]]
    """[groups][n] summed KL(old || reference) per response (zeros when KL is not in the reward)."""
    logprob_diff_sum: float
    """Sum over sampled tokens of |engine log-prob - learner log-prob| (0 without engine log-probs)."""
    logprob_diff_max: float
    """Largest such difference."""
    logprob_diff_tokens: int
    """Tokens the sum covers."""


def deepspeed_config(
    settings: LearnerSettings, world_size: int, grad_accum: int, dtype: str, device: str = "cpu"
) -> dict:
    """The DeepSpeed config of a learner rank. ``gradient_accumulation_steps`` only satisfies DeepSpeed's batch-size
    check: ``update`` marks each mini-batch's last micro-batch as the accumulation boundary itself."""
    config = {
        "train_micro_batch_size_per_gpu": settings.micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": settings.micro_batch_size * grad_accum * world_size,
        "gradient_clipping": settings.grad_clip,
        "zero_optimization": {
            "stage": settings.zero_stage,
            "overlap_comm": settings.overlap_comm,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": True,
            "stage3_param_persistence_threshold": settings.param_persistence_threshold,
        },
        "zero_allow_untested_optimizer": True,
        "wall_clock_breakdown": False,
        "steps_per_print": 10**9,
    }
    if dtype == "bfloat16":
        config["bf16"] = {"enabled": True}
        config["data_types"] = {"grad_accum_dtype": settings.grad_accum_dtype}
    if settings.offload_optimizer:
        # pinned host memory makes the optimizer-state copies asynchronous; there is nothing to pin without a GPU
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": device == "cuda"}
        # the step runs torch's AdamW on the host copies (DeepSpeed refuses a client optimizer with offload unless
        # told; its own DeepSpeedCPUAdam would need a C++ extension built on every node)
        config["zero_force_ds_cpu_optimizer"] = False
    return config


def export_tokenizer_files(model_path: str, out: Path) -> None:
    """Copy tokenizer and processor files next to exported weights so the export loads on its own."""
    for name in os.listdir(model_path):
        if name.startswith(TOKENIZER_FILES):
            shutil.copy(os.path.join(model_path, name), out / name)


@ray.remote
class LearnerWorker:
    """One ZeRO rank: holds its parameter partition and optimizer state, trains on its share of the groups."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        model_path: str,
        settings: LearnerSettings,
        loss: grpo.LossSettings,
        dtype: str,
        temperature: float,
        seed: int = 0,
        colocate_reference: bool = False,
    ):
        self.device = setup_process(settings.device, settings.torch_threads, settings.cpu_cores)
        self.rank, self.world_size = rank, world_size
        self.colocate_reference, self.reference = colocate_reference, None
        self.model_path, self.settings, self.loss, self.dtype = model_path, settings, loss, dtype
        self.temperature, self.seed = temperature, seed
        self.engine = None
        self.batch: list[PromptGroup] = []
        self.old: list[torch.Tensor] = []
        self.ref: list[torch.Tensor] | None = None
        self.diff: tuple[float, float, int] = (0.0, 0.0, 0)
        self.sender, self.sender_key = None, None

    def master_address(self) -> str:
        return f"{node_ip()}:{free_port()}"

    def init(self, master: str, plan: RankPlan) -> dict:
        host, port = master.rsplit(":", 1)
        os.environ.update(
            MASTER_ADDR=host,
            MASTER_PORT=port,
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
        )
        # deepspeed reads DS_ACCELERATOR at import (set by setup_process), and is only needed on learner ranks
        import deepspeed

        torch.manual_seed(self.seed + self.rank)
        backend = "nccl" if self.device == "cuda" else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        self.plan = plan
        encoder = PromptEncoder(self.model_path)
        self.pad_id, self.blocked = encoder.pad_token_id, encoder.forbidden_ids
        s = self.settings
        self.grad_accum = max(1, math.ceil(plan.sequences_per_update / s.micro_batch_size))
        config = deepspeed_config(s, self.world_size, self.grad_accum, self.dtype, self.device)
        if s.zero_stage == 3 and s.zero_init:
            from transformers.integrations import HfDeepSpeedConfig

            # transformers keeps only a weak reference: while this object lives, from_pretrained builds the model
            # under deepspeed.zero.Init and loads each rank's partition
            self.hf_deepspeed_config = HfDeepSpeedConfig(config)
        # straight in the training dtype (DeepSpeed keeps fp32 master weights in the optimizer for bf16)
        model = load_policy(self.model_path, self.dtype)
        if s.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=s.lr,
            betas=(s.beta1, s.beta2),
            eps=s.adam_eps,
            weight_decay=s.weight_decay,
        )
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        if (
            self.colocate_reference
        ):  # reference.colocate_with_learner: the initial weights, ZeRO-3 sharded, no optimizer
            frozen = load_policy(self.model_path, "float32").requires_grad_(False)
            self.reference, *_ = deepspeed.initialize(model=frozen, config=config)  # no optimizer: ZeRO-3 params only
            self.reference.eval()
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in self.engine.module.parameters())
        return {"rank": self.rank, "params": int(n_params), "backend": backend, "zero_stage": s.zero_stage}

    # -- one rollout batch ----------------------------------------------------------------------------------------
    def prepare(self, group_refs: list, ref_refs: list | None, use_engine_logprobs: bool) -> PrepareInfo:
        """Fetch this rank's groups (and reference log-probs) from the object store; compute old log-probs."""
        self.batch = ray.get(list(group_refs))
        if len(self.batch) != self.plan.groups_per_rank:
            raise ValueError(f"rank {self.rank} expected {self.plan.groups_per_rank} groups, got {len(self.batch)}")
        self.ref = None
        seqs = sequences(self.batch)
        if ref_refs is not None:
            self.ref = [lp for g in ray.get(list(ref_refs)) for lp in g.logprobs]
        elif self.reference is not None:  # collective: every rank scores its own groups
            self.ref = self._logprobs(self.reference, seqs)
        engine_lps = [r.engine_logprobs for g in self.batch for r in g.responses]
        have_engine = all(lp is not None for lp in engine_lps)
        if use_engine_logprobs and have_engine:
            self.old = [torch.tensor(lp, dtype=torch.float32) for lp in engine_lps]
            self.diff = (0.0, 0.0, 0)  # measured on the first mini-batch's forward pass instead
        else:
            self.engine.eval()
            self.old = self._logprobs(self.engine, seqs)
            self.diff = self._agreement(engine_lps, self.old) if have_engine else (0.0, 0.0, 0)
        kl = [[0.0] * len(g) for g in self.batch]
        if self.ref is not None and self.loss.kl_in == "reward":
            flat = [
                float(grpo.sequence_kl(o[None], r[None], torch.ones(1, len(o), dtype=torch.bool), self.loss)[0])
                for o, r in zip(self.old, self.ref)
            ]
            kl = [flat[i * self.plan.group_size : (i + 1) * self.plan.group_size] for i in range(len(self.batch))]
        return PrepareInfo(kl, *self.diff)

    def _logprobs(self, model, seqs: list) -> list:
        """Response-token log-probs of ``seqs`` under ``model`` (the policy or the colocated reference), in the
        learner's micro-batches; collective under ZeRO-3."""
        s = self.settings
        return sequence_logprobs(
            model,
            seqs,
            self.pad_id,
            self.temperature,
            s.micro_batch_size,
            self.blocked,
            s.max_tokens_per_micro_batch,
            s.logprob_chunk_tokens,
            "learner.max_tokens_per_micro_batch",
            self._passes_on_every_rank,
        )

    def _passes_on_every_rank(self, passes: int) -> int:
        """The largest number of forward/backward passes any rank plans for its share (token budgets give ranks
        different counts; ZeRO-3 gathers and every stage's gradient reduction are collectives that need equal ones)."""
        if self.world_size == 1:
            return passes
        count = torch.tensor([passes], dtype=torch.int64, device=self.engine.device)
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        return int(count.item())

    @staticmethod
    def _agreement(engine_lps: list, learner_lps: list[torch.Tensor]) -> tuple[float, float, int]:
        total, largest, count = 0.0, 0.0, 0
        for e, mine in zip(engine_lps, learner_lps):
            if len(e) != len(mine):
                raise ValueError(f"engine reported {len(e)} log-probs for a {len(mine)}-token response")
            if len(e):
                d = (torch.tensor(e, dtype=torch.float32) - mine).abs()
                total, largest, count = total + float(d.sum()), max(largest, float(d.max())), count + len(e)
        return total, largest, count

    def update(self, advantages: list[list[float]]) -> UpdateStats:
        """``ppo_epochs`` passes over the prepared batch, one optimizer step per mini-batch.

        ``advantages``: [groups_per_rank][n] group-relative advantages from the driver.
        """
        if len(advantages) != len(self.batch):
            raise ValueError(
                f"rank {self.rank} holds {len(self.batch)} groups but got {len(advantages)} advantage lists"
            )
        start = time.perf_counter()
        plan, s = self.plan, self.settings
        seqs = sequences(self.batch)
        adv = [a for group in advantages for a in group]
        if len(adv) != len(seqs):
            raise ValueError(f"rank {self.rank}: {len(adv)} advantages for {len(seqs)} responses")
        self.engine.train()
        sums: dict[str, float] = {}
        token_sums: dict[str, float] = {}
        grad_norms, steps, micro_steps, ratio_max, tokens = [], 0, 0, 1.0, 0
        real_tokens, padded_tokens = 0, 0
        diff = list(self.diff)
        for _epoch in range(plan.ppo_epochs):
            for u in range(plan.updates_per_epoch):
                lo = u * plan.sequences_per_update
                mini = list(range(lo, lo + plan.sequences_per_update))
                lengths = [sequence_length(seqs[i]) for i in mini]
                micro = aligned_micro_batches(
                    lengths,
                    s.micro_batch_size,
                    s.max_tokens_per_micro_batch,
                    "learner.max_tokens_per_micro_batch",
                    self._passes_on_every_rank,
                )
                real_tokens, padded_tokens = real_tokens + micro.tokens, padded_tokens + micro.padded_tokens
                normalizer = grpo.LossNormalizer.of([len(self.old[i]) for i in mini])
                for k, part in enumerate(micro.batches):
                    ids = [mini[i] for i in part]
                    # one optimizer step per mini-batch, whatever its number of micro-batches
                    self.engine.set_gradient_accumulation_boundary(k == len(micro.batches) - 1)
                    logp, mask = token_logprobs(
                        self.engine,
                        [seqs[i] for i in ids],
                        self.pad_id,
                        self.temperature,
                        grad=True,
                        blocked=self.blocked,
                        chunk_tokens=s.logprob_chunk_tokens,
                    )
                    if steps == 0 and diff[2] == 0 and self.batch[0].responses[0].engine_logprobs is not None:
                        self._measure_first_pass(logp, mask, ids, diff)
                    old = repad([self.old[i] for i in ids], mask)
                    ref = repad([self.ref[i] for i in ids], mask) if self.ref is not None else None
                    a = torch.tensor([adv[i] for i in ids], dtype=torch.float32, device=logp.device)
                    loss, info = grpo.grpo_loss(logp, old, ref, a, mask, self.loss, normalizer)
                    # the loss is already this micro-batch's share of the mini-batch loss: no 1/accumulation steps
                    self.engine.backward(loss, scale_wrt_gas=False)
                    self.engine.step()
                    micro_steps += 1
                    n = int(mask.sum())
                    tokens += n
                    ratio_max = max(ratio_max, float(info.pop("ratio_max", 1.0)))
                    for key in ("loss", "pg_loss", "kl"):  # shares of the mini-batch value: summed
                        sums[key] = sums.get(key, 0.0) + float(info.pop(key))
                    for key, v in info.items():  # means over this micro-batch's tokens: token-weighted
                        token_sums[key] = token_sums.get(key, 0.0) + float(v) * n
                steps += 1
                norm = self.engine.get_global_grad_norm()
                grad_norms.append(float(norm) if norm is not None else float("nan"))
        mean = {k: v / max(steps, 1) for k, v in sums.items()}
        mean.update({k: v / max(tokens, 1) for k, v in token_sums.items()})
        mean["micro_batches"] = micro_steps
        mean["padding_fraction"] = 1.0 - real_tokens / padded_tokens if padded_tokens else 0.0
        stats = UpdateStats(
            loss=mean.pop("loss", 0.0),
            pg_loss=mean.pop("pg_loss", 0.0),
            kl=mean.pop("kl", 0.0),
            clip_frac_high=mean.pop("clip_frac_high", 0.0),
            clip_frac_low=mean.pop("clip_frac_low", 0.0),
            dual_clip_frac=mean.pop("dual_clip_frac", 0.0),
            ratio_mean=mean.pop("ratio_mean", 1.0),
            ratio_max=ratio_max,
            grad_norm=sum(grad_norms) / max(len(grad_norms), 1),
            lr=float(self.optimizer.param_groups[0]["lr"]),
            optimizer_steps=steps,
            logprob_diff_mean=diff[0] / diff[2] if diff[2] else float("nan"),
            logprob_diff_max=diff[1] if diff[2] else float("nan"),
            tokens=tokens,
            seconds=time.perf_counter() - start,
            extra=mean,
        )
        self.batch, self.old, self.ref = [], [], None
        return stats

    def _measure_first_pass(self, logp, mask, ids: list[int], diff: list) -> None:
        """With engine log-probs as old log-probs, the first mini-batch's forward pass (before any optimizer step)
        is the learner's view of the sampling policy: measure the agreement there."""
        mine = [lp.detach().float().cpu() for lp in (logp[k][mask[k]] for k in range(logp.shape[0]))]
        total, largest, count = self._agreement([self.old[k].tolist() for k in ids], mine)
        diff[0], diff[1], diff[2] = diff[0] + total, max(diff[1], largest), diff[2] + count

    # -- weights and checkpoints ----------------------------------------------------------------------------------
    def get_weights(self):
        """Gather the full state dict. Collective: call on every rank; rank 0 returns CPU tensors, others None."""
        import deepspeed  # only present on learner nodes; already imported by init

        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if self.rank == 0:
                return {k: v.detach().to("cpu").clone() for k, v in self.engine.module.state_dict().items()}
        return None

    def stream_weights(self, bucket_mb: int, version: int):
        """Object-store weight sync, rank 0 (call with ``num_returns="streaming"``): gathers one bucket at a time
        (collective: the other ranks run :meth:`follow_weight_stream` at the same time) and yields it as a
        :class:`actors.records.WeightBucket`, which Ray writes into the object store before the next bucket is
        gathered. Nothing is kept after the sync."""
        from actors.weight_sync import BucketSource, to_wire

        source = BucketSource(self.engine.module, int(bucket_mb) << 20)
        for i, bucket in enumerate(source.buckets()):
            wire = to_wire(bucket, i, len(source.plan), version)
            yield wire
            # its arrays view the gathered parameters, and Ray's generator loop still holds the yielded object while
            # the next bucket is gathered: empty it, so that this bucket is released first
            wire.data.clear()

    def follow_weight_stream(self, bucket_mb: int) -> int:
        """The other ranks' part of a streamed sync (both paths): take part in each bucket's gather. Returns the
        number of buckets."""
        from actors.weight_sync import BucketSource

        source = BucketSource(self.engine.module, int(bucket_mb) << 20)
        return sum(1 for _ in source.buckets())

    def send_weights_nccl(self, workers: list, bucket_mb: int, ranks_per_engine: int = 1) -> float | None:
        """``rollout.weight_sync=nccl``: rank 0 broadcasts the weights to every engine through vLLM's weight-transfer
        API, gathering one bucket at a time while the other ranks take part in the gathers
        (:meth:`follow_weight_stream`). The NCCL group is rebuilt when the set of engines changes; the old group is
        shut down on every engine that is still alive first. GPU only."""
        if self.rank != 0:
            self.follow_weight_stream(bucket_mb)
            return None
        # vLLM is an optional dependency of learner nodes; only this path needs it
        from actors.vllm_engine import NCCLSenderConfig, NCCLWeightSender, RolloutWorkerSyncClient
        from actors.weight_sync import BucketSource

        key = tuple(w._actor_id.hex() for w in workers)
        if key != self.sender_key:
            if self.sender is not None:
                alive = set(key)
                self.sender.close([w for w in self.sender.client.handles if w._actor_id.hex() in alive])
            config = NCCLSenderConfig(node_ip(), free_port(), len(workers), int(bucket_mb) << 20, ranks_per_engine)
            client = RolloutWorkerSyncClient(workers, ranks_per_engine=ranks_per_engine)
            self.sender = NCCLWeightSender(client, config, device=self.device)
            self.sender_key = key
        return self.sender.send(BucketSource(self.engine.module, int(bucket_mb) << 20))

    def save_checkpoint(self, directory: str, tag: str) -> str:
        """DeepSpeed checkpoint (sharded model and optimizer state) under ``directory/tag``; collective."""
        self.engine.save_checkpoint(directory, tag=tag, save_latest=False)
        return str(Path(directory) / tag)

    def load_checkpoint(self, directory: str, tag: str) -> bool:
        d = Path(directory) / tag
        if not d.is_dir() or not any(d.glob("*model_states.pt")):
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag} in {directory}")
        path, _ = self.engine.load_checkpoint(directory, tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag} in {directory}")
        return True

    def export_hf(self, out_dir: str) -> str | None:
        """Write the policy as a plain transformers checkpoint with tokenizer files. Collective; rank 0 writes into a
        temporary folder that replaces ``out_dir`` only when complete."""
        state = self.get_weights()
        if self.rank != 0:
            return None
        out = Path(out_dir)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.engine.module.save_pretrained(str(tmp), state_dict=state)
        export_tokenizer_files(self.model_path, tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return out_dir

    def alive(self) -> bool:
        return True

    def shutdown(self) -> bool:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        return True


class LearnerRankDied(RuntimeError):
    """A learner rank's process died. The other ranks would wait for it in their next collective (gloo/NCCL time
    out after many minutes), so the run stops; the next start resumes from the last complete checkpoint."""


class LearnerGroup:
    """All learner ranks as one object: starts them, shards batches (whole prompt groups per rank) and fans calls
    out. Call order matters for ZeRO-3 collectives, so every method calls every rank."""

    def __init__(
        self,
        model_path: str,
        settings: LearnerSettings,
        loss: grpo.LossSettings,
        plan: BatchPlan,
        dtype: str,
        temperature: float,
        seed: int = 0,
        actor_options: dict | None = None,
        colocate_reference: bool = False,
    ):
        """``actor_options``: extra Ray options for every rank (custom resources, a scheduling strategy);
        ``colocate_reference``: the ranks also hold the reference policy and compute reference log-probs in
        ``prepare`` when given no reference ObjectRefs (``reference.colocate_with_learner``)."""
        world = settings.num_workers
        self.world_size, self.broken = world, False
        self.plan = plan.per_rank(world)
        self.ranks = [
            LearnerWorker.options(
                num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, **(actor_options or {})
            ).remote(rank, world, model_path, settings, loss, dtype, temperature, seed, colocate_reference)
            for rank in range(world)
        ]
        master = self._gather([self.ranks[0].master_address.remote()], "start")[0]
        self.info = self._gather([r.init.remote(master, self.plan) for r in self.ranks], "init")

    def _gather(self, refs: list, what: str, fetch: bool = True) -> list | None:
        """``ray.get`` of one call per rank (``refs[i]`` from rank i), failing as soon as any rank's process dies:
        a plain ``ray.get`` would block on a live rank stuck in a collective with the dead one. ``fetch=False``
        only waits (results stay in the object store) and asks a finished rank whether it is still alive."""
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, fetch_local=fetch)
            rank = index[ready[0]]
            try:
                ray.get(ready[0] if fetch else self.ranks[rank].alive.remote())
            except RayActorError as e:
                raise self._died(rank, what, e) from None
            except Exception:
                # a live rank whose collective broke because a peer died: name the dead one
                dead = self._dead_ranks()
                if dead:
                    raise self._died(dead[0][0], what, dead[0][1]) from None
                raise
        return ray.get(list(refs)) if fetch else None

    def _died(self, rank: int, what: str, error: Exception) -> LearnerRankDied:
        self.broken = True  # the live ranks may be stuck in a collective: shutdown kills them at once
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return LearnerRankDied(
            f"learner rank {rank} of {self.world_size} died during {what} ({reason[:200]}); the run stops, and the "
            "next start resumes from the last complete checkpoint"
        )

    def _dead_ranks(self, timeout_s: float = 10.0) -> list[tuple[int, Exception]]:
        """Ranks whose process is gone (a rank busy in a collective does not answer in time and counts as alive)."""
        probes = {r.alive.remote(): i for i, r in enumerate(self.ranks)}
        ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=timeout_s)
        dead = []
        for ref in ready:
            try:
                ray.get(ref)
            except RayActorError as e:
                dead.append((probes[ref], e))
        return sorted(dead, key=lambda d: d[0])

    def _shards(self, items: list) -> list[list]:
        k = self.plan.groups_per_rank
        if len(items) != k * self.world_size:
            raise ValueError(
                f"the learner group trains on {k * self.world_size} prompt groups per step, got {len(items)}"
            )
        return [items[r * k : (r + 1) * k] for r in range(self.world_size)]

    def prepare(self, group_refs: list, ref_refs: list | None, use_engine_logprobs: bool) -> PrepareInfo:
        """Old log-probs on every rank; returns the merged :class:`PrepareInfo` in batch order."""
        refs = self._shards(ref_refs) if ref_refs is not None else [None] * self.world_size
        infos = self._gather(
            [
                r.prepare.remote(g, rf, use_engine_logprobs)
                for r, g, rf in zip(self.ranks, self._shards(group_refs), refs)
            ],
            "prepare",
        )
        return PrepareInfo(
            [kl for i in infos for kl in i.sequence_kl],
            sum(i.logprob_diff_sum for i in infos),
            max(i.logprob_diff_max for i in infos),
            sum(i.logprob_diff_tokens for i in infos),
        )

    def update(self, advantages: list[list[float]]) -> list[UpdateStats]:
        return self._gather([r.update.remote(a) for r, a in zip(self.ranks, self._shards(advantages))], "update")

    def weights(self) -> ray.ObjectRef:
        """Rank 0's gathered state dict, left in the object store (the others take part in the gather). The
        pre-streaming sync (every parameter gathered at once); kept for scripts/bench_weight_sync.py's comparison."""
        refs = [r.get_weights.remote() for r in self.ranks]
        self._gather(refs, "the weight gather", fetch=False)  # the state dict stays in the object store
        return refs[0]

    def stream_weights(self, bucket_mb: int, version: int, in_flight: int = 2):
        """Start a streamed object-store sync. Returns ``(buckets, followers)``: rank 0's generator of
        :class:`actors.records.WeightBucket` refs (at most ``in_flight`` produced ahead of the consumer) and the other
        ranks' call refs; pass both to :meth:`finish_stream` once the buckets are consumed."""
        buckets = (
            self.ranks[0]
            .stream_weights.options(num_returns="streaming", _generator_backpressure_num_objects=in_flight)
            .remote(bucket_mb, version)
        )
        followers = [r.follow_weight_stream.remote(bucket_mb) for r in self.ranks[1:]]
        return buckets, followers

    def finish_stream(self, buckets, followers: list) -> None:
        """Wait for every rank's part of a streamed sync (failing fast, naming a rank that died)."""
        self._gather([buckets.completed(), *followers], "the streamed weight sync", fetch=False)

    def start_send_weights_nccl(self, workers: list, bucket_mb: int, ranks_per_engine: int = 1) -> list:
        """Start an NCCL sync on every rank; returns the call refs (the caller waits with its deadline, then passes
        them to :meth:`finish_send_weights_nccl`)."""
        return [r.send_weights_nccl.remote(workers, bucket_mb, ranks_per_engine) for r in self.ranks]

    def finish_send_weights_nccl(self, refs: list) -> None:
        self._gather(refs, "the NCCL weight sync", fetch=False)

    def save_checkpoint(self, directory: str, tag: str) -> None:
        self._gather([r.save_checkpoint.remote(directory, tag) for r in self.ranks], f"checkpoint {tag}")

    def load_checkpoint(self, directory: str, tag: str) -> None:
        self._gather([r.load_checkpoint.remote(directory, tag) for r in self.ranks], f"loading checkpoint {tag}")

    def export_hf(self, out_dir: str) -> None:
        self._gather([r.export_hf.remote(out_dir) for r in self.ranks], "the final-model export")

    def shutdown(self) -> None:
        for r in self.ranks:
            if not self.broken:
                try:
                    ray.get(r.shutdown.remote(), timeout=30)
                except Exception:  # a dead rank has nothing left to shut down
                    pass
            ray.kill(r)


@ray.remote(max_restarts=-1, max_task_retries=2)
class ReferencePolicy:
    """Frozen copy of the initial policy; serves reference log-probs for the KL term. Restarted by Ray if it dies
    (it holds no state but the initial weights)."""

    def __init__(self, model_path: str, settings: ReferenceSettings, dtype: str, temperature: float):
        self.device = setup_process(settings.device, settings.torch_threads, settings.cpu_cores)
        encoder = PromptEncoder(model_path)
        self.pad_id, self.blocked = encoder.pad_token_id, encoder.forbidden_ids
        self.model = load_policy(model_path, dtype).to(self.device).eval().requires_grad_(False)
        self.temperature, self.settings = temperature, settings

    def compute_logprobs(self, group: PromptGroup) -> GroupLogprobs:
        """Reference log-probs of one prompt group (passed by reference, fetched from the object store)."""
        s, start = self.settings, time.time()
        out = group_logprobs(
            self.model,
            [group],
            self.pad_id,
            self.temperature,
            s.micro_batch_size,
            self.blocked,
            s.max_tokens_per_micro_batch,
            s.logprob_chunk_tokens,
            "reference.max_tokens_per_micro_batch",
        )[0]
        out.start, out.end = start, time.time()
        return out

    def ready(self) -> bool:
        return True


__all__ = [
    "BatchPlan",
    "RankPlan",
    "LearnerGroup",
    "LearnerRankDied",
    "LearnerWorker",
    "PrepareInfo",
    "ReferencePolicy",
    "Sequence",
]
