"""The GRPO driver: owns the actor pools and runs steps.

One step, as named timed phases::

    generate        prompts --> RolloutPool (elastic) --> PromptGroup ObjectRefs
    score           ObjectRefs --> RewardWorkers (rewards), and ReferencePolicy (reference log-probs) started beside
    reference       the wait for the reference log-probs that outlast the rewards (with KL only)
    old_logprobs    LearnerGroup.prepare: ranks fetch their groups (and reference log-probs), compute old log-probs
                    and engine agreement
    advantages      group-relative advantages from the rewards (minus sequence KL when KL is in the reward)
    update          LearnerGroup.update: mini-batch optimizer steps on every rank
    weight_sync     learner buckets (one gathered at a time) --> object store --> every rollout engine

Trajectories never pass through the driver: it holds ObjectRefs and the small reward records.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from pathlib import Path

import ray
import torch

from actors.learner import BatchPlan, LearnerGroup, ReferencePolicy
from actors.model import TinyModelSpec, build_tiny_model, check_model_dir
from actors.records import RolloutRequest, TaskSample
from actors.reward_worker import RewardWorker
from actors.settings import resolve_dtype
from actors.warmstart import sft_warm_start
from cluster import control as control_mod
from cluster.checkpoints import CheckpointError, CheckpointStore, atomic_write, read_state
from cluster.config import ConfigError, TrainConfig, flatten, resolve_output_dir
from cluster.metrics import (
    advantage_metrics,
    reward_metrics,
    rollout_metrics,
    step_metrics,
    timed,
    update_metrics,
)
from cluster.pipeline import Pipeline, advantages_of
from cluster.plots import plot_run
from cluster.pool import GroupResult, RolloutPool
from cluster.timeline import Timeline
from cluster.tracking import Tracker, default_uri
from datagen.corpus import tokenizer_corpus
from datagen.stvqa import DatasetError, build_dataset, load_stvqa, task_fields
from evaluation.registry import load_benchmark
from evaluation.report import evaluate_rows
from evaluation.runner import build_requests
from rewards.prompt import PromptBuilder

log = logging.getLogger("spatialthinker")
REPO_ROOT = str(Path(__file__).resolve().parents[1])


class ResumeError(RuntimeError):
    """A run folder or checkpoint that cannot be resumed; the message says what to do."""


# -- data -----------------------------------------------------------------------------------------------------------
class PromptStream:
    """Training rows in a seeded order per epoch; a row that cannot be used is skipped and reported by id."""

    def __init__(self, dataset, seed: int, shuffle: bool, prompts: PromptBuilder):
        self.dataset, self.seed, self.shuffle, self.prompts = dataset, seed, shuffle, prompts
        self.epoch, self.pos, self.skipped = 0, 0, []
        self._order: list[int] = []

    def order(self) -> list[int]:
        if len(self._order) != len(self.dataset):
            self._order = list(range(len(self.dataset)))
            if self.shuffle:
                random.Random(self.seed * 100003 + self.epoch).shuffle(self._order)
        return self._order

    def take(self, k: int, step: int, offset: int = 0) -> list[RolloutRequest]:
        """The next ``k`` usable rows as requests of ``step``, numbered from ``offset`` (extra draws of a step)."""
        requests: list[RolloutRequest] = []
        bad_in_a_row = 0
        while len(requests) < k:
            if self.pos >= len(self.dataset):
                self.epoch, self.pos, self._order = self.epoch + 1, 0, []
            index = self.order()[self.pos]
            self.pos += 1
            try:
                fields = task_fields(self.dataset[index])
                index = offset + len(requests)
                seed = (self.seed * 1_000_003 + step * 10_007 + index) % 2**31
                requests.append(make_request(fields, f"s{step}", index, self.prompts, seed))
                bad_in_a_row = 0
            except DatasetError as e:
                log.warning("skipping training row %d: %s", index, e)
                self.skipped.append(str(e))
                bad_in_a_row += 1
                if bad_in_a_row >= len(self.dataset):
                    raise DatasetError("no usable row in the training split") from None
        return requests


def make_request(fields: dict, prefix: str, index: int, prompts: PromptBuilder, seed: int | None = None):
    """A rollout request for one task row (:func:`datagen.stvqa.task_fields`)."""
    sample = TaskSample(str(fields["id"]), fields["ground_truth"], tuple(fields["image_size"]), fields["category"])
    return RolloutRequest(
        uid=f"{prefix}-{fields['id']}",
        index=index,
        messages=prompts.messages(fields["question"], fields["options"], fields["image_size"]),
        images=[prompts.image(fields["image"])],
        sample=sample,
        seed=seed,
    )


def prepare_dataset(cfg: TrainConfig, out: Path) -> str:
    """``data.dataset``, or the STVQA dataset synthesised once under the run folder."""
    if cfg.data.dataset:
        return cfg.data.dataset
    target = out / "data" / "stvqa"
    if (target / "dataset_dict.json").exists():
        return str(target)
    build_dataset(
        target,
        vg_root=cfg.data.vg_root,
        synthetic_images=cfg.data.synthetic_images,
        synthetic_root=out / "data" / "vg_synthetic",
        seed=cfg.seed,
        relation_fraction=cfg.data.relation_fraction,
    )
    return str(target)


def prepare_model(cfg: TrainConfig, out: Path, train_rows, prompts: PromptBuilder) -> str:
    """``model.path``, or the tiny model built and format-warm-started once under the run folder."""
    if cfg.model.path:
        return str(check_model_dir(cfg.model.path))
    target = out / "tiny_model"
    done = target / "warm_start.json"
    if done.exists():
        return str(target)
    spec = TinyModelSpec(
        hidden_size=cfg.model.tiny_hidden_size,
        num_layers=cfg.model.tiny_layers,
        seed=cfg.seed,
        tie_word_embeddings=cfg.model.tiny_tie_word_embeddings,
    )
    path = build_tiny_model(target, tokenizer_corpus(), spec)
    samples = []
    for i in range(len(train_rows)):
        try:
            samples.append(task_fields(train_rows[i]))
        except DatasetError as e:
            log.warning("warm start skips row %d: %s", i, e)
    m = cfg.model
    info = sft_warm_start(
        path,
        samples,
        prompts,
        steps=m.warm_start_steps,
        lr=m.warm_start_lr,
        batch_size=m.warm_start_batch_size,
        seed=cfg.seed,
    )
    atomic_write(done, json.dumps(info))
    log.info("built the tiny model in %s (warm start: %s)", path, info)
    return path


def init_ray(cfg: TrainConfig) -> bool:
    """Join the configured cluster (``ray_address``, or RAY_ADDRESS as ``ray job submit`` sets it) or start a NEW local
    instance, even when a ``ray start`` cluster runs on this machine (join that one with ``ray_address=auto``).
    Returns True when this process started Ray."""
    if ray.is_initialized():
        return False
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=cfg.namespace, log_to_driver=True)
        return False
    pythonpath = os.pathsep.join([REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(
        address="local",
        num_cpus=cfg.ray_num_cpus or max(4, os.cpu_count() or 1),
        namespace=cfg.namespace,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "TOKENIZERS_PARALLELISM": "false"}},
    )
    return True


class GRPOTrainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.out = resolve_output_dir(cfg.output_dir)
        self.checkpoints = CheckpointStore(self.out / "checkpoints")
        self.step = self.version = 0
        self.started_ray = False
        self.pool = self.learners = self.tracker = self.reference = None
        self.reward_workers: list = []
        self.stop_signal: str | None = None
        self.val_history: dict = {}
        self.last_logged = 0
        # set by setup(): the dataset, the model, the run id and Ray exist only from then on
        self.prompts: PromptBuilder | None = None
        self.dataset_path = ""
        self.model_path = ""
        self.val_rows = None
        self.benchmark_rows: list | None = None
        self.stream: PromptStream | None = None
        self.device = "cpu"
        self.dtype = ""
        self.run_id = ""
        self.control = None
        self.pipeline = self.timeline = None

    # -- setup ------------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        cfg.output_dir = str(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write_test"
            probe.write_text("ok")
            probe.unlink()
            self.checkpoints.root.mkdir(exist_ok=True)
        except OSError as e:
            raise ResumeError(f"output_dir {self.out} is not writable: {e.strerror}") from None
        resume = self._find_resume()
        state = resume[1] if resume else None
        self.prompts = PromptBuilder(cfg.prompt)
        self.dataset_path = state["dataset"] if state else prepare_dataset(cfg, self.out)
        train_rows = load_stvqa(self.dataset_path, cfg.data.train_split)
        self.val_rows = load_stvqa(self.dataset_path, cfg.data.val_split) if self._validating() else None
        if len(train_rows) < cfg.algo.prompts_per_step:
            raise DatasetError(
                f"{self.dataset_path} split {cfg.data.train_split!r} has {len(train_rows)} rows, fewer than "
                f"algo.prompts_per_step={cfg.algo.prompts_per_step}"
            )
        self.model_path = state["model_path"] if state else prepare_model(cfg, self.out, train_rows, self.prompts)
        self.stream = PromptStream(train_rows, cfg.seed, cfg.data.shuffle, self.prompts)
        self.device = "cuda" if cfg.learner.num_gpus > 0 else "cpu"
        self.dtype = resolve_dtype(cfg.model.dtype, self.device)
        self.run_id = state["run_id"] if state else control_mod.new_run_id(self.out)
        self.started_ray = init_ray(cfg)
        self.tracker = Tracker(
            cfg.mlflow_tracking_uri or default_uri(self.out),
            cfg.experiment_name,
            cfg.run_name or self.out.name,
            self.out / "mlflow_buffer.jsonl",
            run_id=state.get("mlflow_run_id") if state else None,
        )
        self._record_config(state)
        self.timeline = Timeline(self.out / "timeline.json")
        if cfg.algo.max_staleness > 0 or cfg.algo.filter_groups:
            self.pipeline = Pipeline(self)
        self._start_actors()
        control_mod.write_run_file(self.out, self.run_id, cfg.namespace, ray.get_runtime_context().gcs_address)
        if resume:
            self._restore(*resume)

    def _validating(self) -> bool:
        return self.cfg.eval.val_before_train or self.cfg.eval.val_every > 0

    def _record_config(self, state: dict | None) -> None:
        cfg, config_file = self.cfg, self.out / "config.json"
        now = flatten(cfg.to_dict())
        if state and config_file.exists():
            before = flatten(json.loads(config_file.read_text()))
            changed = {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v and k != "resume"}
            if changed:
                log.warning(
                    "settings changed on resume: %s",
                    ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()),
                )
                with open(self.out / "config_changes.jsonl", "a") as fh:
                    fh.write(
                        json.dumps({"resumed_at_step": state["step"], "time": time.time(), "changed": changed}) + "\n"
                    )
                self.tracker.set_tags(
                    {
                        f"resume_change.step_{state['step']}.{k}": f"{a!r} -> {b!r}"[:250]
                        for k, (a, b) in changed.items()
                    }
                )
        self.tracker.log_params(now)
        self.tracker.set_tags(
            {
                "model_path": self.model_path,
                "dataset": self.dataset_path,
                "run_id": self.run_id,
                "output_dir": str(self.out),
            }
        )
        atomic_write(config_file, json.dumps(cfg.to_dict(), indent=2))

    def _start_actors(self) -> None:
        cfg = self.cfg
        r = cfg.rollout
        self.control = control_mod.TrainingControl.options(
            name=control_mod.control_name(self.run_id), namespace=cfg.namespace, lifetime=None
        ).remote(self.run_id, r.num_workers, r.min_workers, r.max_workers)
        self.reward_workers = [
            RewardWorker.options(num_cpus=cfg.reward_workers.num_cpus).remote(cfg.reward)
            for _ in range(cfg.reward_workers.num_workers)
        ]
        colocated = cfg.algo.kl_beta > 0 and cfg.reference.colocate_with_learner  # reference on the learner ranks
        if cfg.algo.kl_beta > 0 and not colocated:
            self.reference = ReferencePolicy.options(
                num_cpus=cfg.reference.num_cpus, num_gpus=cfg.reference.num_gpus
            ).remote(self.model_path, cfg.reference, self.dtype, r.temperature)
        plan = BatchPlan(cfg.algo.prompts_per_step, cfg.algo.prompts_per_update, r.group_size, cfg.algo.ppo_epochs)
        self.learners = LearnerGroup(
            self.model_path,
            cfg.learner,
            cfg.algo.loss_settings(),
            plan,
            self.dtype,
            r.temperature,
            cfg.seed,
            colocate_reference=colocated,
        )
        self.pool = RolloutPool(self.model_path, r, self.dtype, seed=cfg.seed)
        _, unplaced = self.pool.add_workers(r.num_workers)
        if not self.pool.size():
            raise RuntimeError(f"none of the {r.num_workers} rollout worker(s) could be started")
        ray.get(
            [w.ready.remote() for w in self.reward_workers]
            + ([self.reference.ready.remote()] if self.reference else [])
        )

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def _find_resume(self) -> tuple[Path, dict] | None:
        res = self.cfg.resume
        if res == "never":
            if self.checkpoints.has_any():
                raise ResumeError(
                    f"{self.out} already holds checkpoints; use resume=auto to continue it or choose "
                    "another output_dir"
                )
            return None
        if res == "auto":
            found = self.checkpoints.newest_complete()
            if found is None and self.checkpoints.has_any():
                log.warning("no complete checkpoint in %s; starting from the beginning", self.checkpoints.root)
            return self._check_world(found) if found else None
        ckpt = Path(res).resolve()
        try:
            return self._check_world((ckpt, read_state(ckpt)))
        except CheckpointError as e:
            raise ResumeError(str(e)) from None

    def _check_world(self, found: tuple[Path, dict]) -> tuple[Path, dict]:
        ckpt, state = found
        if state.get("learner_world_size") != self.cfg.learner.num_workers:
            raise ResumeError(
                f"checkpoint {ckpt} was written by {state.get('learner_world_size')} learner ranks; set "
                f"learner.num_workers={state.get('learner_world_size')} to resume it"
            )
        return found

    def _restore(self, ckpt: Path, state: dict) -> None:
        self.learners.load_checkpoint(str(ckpt.parent), ckpt.name)
        self.step, self.version = state["step"], state["version"]
        self.stream.epoch, self.stream.pos = state["epoch"], state["pos"]
        self.val_history = state.get("val_history", {})
        random.setstate(_tuple_state(state["python_rng"]))
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self.last_logged = max(self.tracker.last_logged_step("reward/total"), _last_jsonl_step(self.out))
        if self.last_logged > self.step:
            log.warning(
                "steps %d-%d are redone after this resume; their first metrics stay logged, once",
                self.step + 1,
                self.last_logged,
            )
        if self.tracker.status() == "RUNNING":
            self.tracker.set_tags(
                {f"interrupted_after_step_{self.last_logged}": "driver ended without closing the run"}
            )
        self._sync_weights()
        log.info("resumed from %s at step %d", ckpt, self.step)

    def save_checkpoint(self) -> Path:
        # generation may run ahead of training: resume at the first prompt not trained on
        epoch, pos = self.pipeline.resume_point() if self.pipeline else (self.stream.epoch, self.stream.pos)
        state = {
            "step": self.step,
            "version": self.version,
            "epoch": epoch,
            "pos": pos,
            "run_id": self.run_id,
            "mlflow_run_id": self.tracker.run_id,
            "model_path": self.model_path,
            "dataset": self.dataset_path,
            "learner_world_size": self.cfg.learner.num_workers,
            "val_history": self.val_history,
            "python_rng": random.getstate(),
            "torch_rng": torch.get_rng_state().tolist(),
            "time": time.time(),
        }
        ckpt = self.checkpoints.publish(f"step_{self.step}", self.learners.save_checkpoint, state)
        removed = self.checkpoints.prune(self.cfg.keep_checkpoints)
        log.info("checkpoint %s%s", ckpt, f" (removed steps {removed})" if removed else "")
        return ckpt

    # -- one step ---------------------------------------------------------------------------------------------------
    def _sync_weights(self) -> None:
        self.pool.sync_weights(self.learners, self.version)

    def _apply_scaling(self) -> None:
        desired = ray.get(self.control.desired_rollout_workers.remote())
        if desired != self.pool.size():
            before = self.pool.size()
            result = self.pool.scale_to(desired)
            log.info("rollout workers %d -> %d%s", before, result.workers, f" ({result.note})" if result.note else "")
            if result.workers != desired:
                ray.get(self.control.set_rollout_workers.remote(result.workers))

    def _score(self, results: list[GroupResult]) -> list:
        workers = self.reward_workers
        return [workers[i % len(workers)].score.remote(r.group) for i, r in enumerate(results)]

    def train_step(self) -> dict:
        if self.pipeline is not None:  # algo.max_staleness > 0 or algo.filter_groups
            return self.pipeline.train_step()
        cfg, timings = self.cfg, {}
        with timed(timings, "step"):
            self._apply_scaling()
            if self.pool.stale(self.version):  # a worker joined without the current weights (nccl path)
                self._sync_weights()
            requests = self.stream.take(cfg.algo.prompts_per_step, self.step + 1)
            with timed(timings, "generate"):
                results = self.pool.generate(requests, cfg.rollout.group_size)
            group_refs = [r.group for r in results]
            with timed(timings, "score"):
                reward_refs = self._score(results)
                ref_refs = [self.reference.compute_logprobs.remote(g) for g in group_refs] if self.reference else None
                rewards = ray.get(reward_refs)
            with timed(timings, "reference"):  # computed beside the rewards: what is left to wait for
                if ref_refs:
                    ray.wait(ref_refs, num_returns=len(ref_refs), fetch_local=False)
            with timed(timings, "old_logprobs"):
                prep = self.learners.prepare(group_refs, ref_refs, cfg.rollout.use_engine_logprobs)
            with timed(timings, "advantages"):
                with_reference = self.reference is not None or cfg.reference.colocate_with_learner
                advantages = advantages_of(cfg, rewards, prep.sequence_kl, with_reference)
            with timed(timings, "update"):
                stats = self.learners.update(advantages.tolist())
            self.step += 1
            self.version += 1
            with timed(timings, "weight_sync"):
                self._sync_weights()
        return {
            **reward_metrics("reward", [b for group in rewards for b in group]),
            **update_metrics(stats),
            **rollout_metrics(results, prep, stats, self.pool.size(), cfg.rollout.group_size),
            **advantage_metrics(advantages),
            **step_metrics(timings),
            "data/epoch": self.stream.epoch,
            "data/skipped_rows": len(self.stream.skipped),
            **self.timeline.sync_step(self.step, timings, results, self._pool_workers()),
        }

    def _pool_workers(self) -> dict:
        """Workers of each pool, for the busy fractions (the learner ranks work in lock step: one lane)."""
        refs = 1 if self.reference is not None else 0
        return {"rollout": self.pool.size(), "reward": len(self.reward_workers), "reference": refs, "learner": 1}

    # -- validation -------------------------------------------------------------------------------------------------
    def validation_requests(self) -> list[RolloutRequest]:
        rows, n = self.val_rows, self.cfg.eval.val_samples
        order = list(range(len(rows)))
        random.Random(12345).shuffle(order)  # a fixed subset, the same at every validation
        requests = []
        for i in order[: n or len(rows)]:
            try:
                requests.append(make_request(task_fields(rows[i]), "val", len(requests), self.prompts))
            except DatasetError as e:
                log.warning("skipping validation row %d: %s", i, e)
        return requests

    def validate(self) -> dict:
        """Greedy (or ``eval.val_temperature``, ``eval.val_responses`` per row) generation on the validation subset;
        reward components and accuracy, averaged over all responses."""
        timings: dict = {}
        with timed(timings, "validate"):
            requests = self.validation_requests()
            e = self.cfg.eval
            n = e.val_responses if e.val_temperature > 0 else 1  # greedy responses would all be the same
            results = self.pool.generate(requests, n, {"temperature": e.val_temperature})
            rewards = [b for group in ray.get(self._score(results)) for b in group]
        metrics = reward_metrics("val", rewards)
        metrics["val/reward"] = metrics.pop("val/total")
        metrics["val/samples"] = len(rewards)
        with timed(timings, "validate_benchmarks"):
            metrics.update(self.validate_benchmarks())
        metrics.update(step_metrics(timings))
        self.val_history[str(self.step)] = {"reward": metrics["val/reward"], "accuracy": metrics["val/accuracy"]}
        log.info(
            "validation at step %d: reward %.4f accuracy %.4f format %.3f (%d samples)",
            self.step,
            metrics["val/reward"],
            metrics["val/accuracy"],
            metrics["val/format"],
            len(rewards),
        )
        return metrics

    def validate_benchmarks(self) -> dict:
        """The ``eval.benchmarks`` (each capped at ``eval.val_samples`` rows), greedy through the rollout pool, scored
        as ``scripts/evaluate.py`` scores them; ``val/<benchmark>/<metric>``."""
        e = self.cfg.eval
        if not e.benchmarks:
            return {}
        if self.benchmark_rows is None:
            self.benchmark_rows = [
                row
                for name in e.benchmarks
                for row in load_benchmark(name, data_root=e.benchmark_root, limit=e.val_samples or None)
            ]
        requests = build_requests(self.benchmark_rows, self.prompts)
        results = self.pool.generate(requests, 1, {"temperature": e.val_temperature})
        outputs = [ray.get(r.group).responses[0].text for r in results]
        report = evaluate_rows(self.benchmark_rows, outputs, reward_cfg=self.cfg.reward)
        log.info("benchmarks at step %d:\n%s", self.step, report.table())
        return report.metrics("val")

    # -- the loop ---------------------------------------------------------------------------------------------------
    def _log(self, metrics: dict) -> None:
        if self.step <= self.last_logged and self.step > 0:
            return  # a redone step after a resume: logged once already
        self.tracker.log_metrics(metrics, self.step, int(time.time() * 1000))
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": self.step, **metrics}) + "\n")

    def _on_signal(self, signum, _frame) -> None:
        if self.stop_signal:
            raise KeyboardInterrupt  # second signal: stop now
        self.stop_signal = signal.Signals(signum).name
        log.warning(
            "%s received: checkpointing after the current step, then exiting (again to stop at once)", self.stop_signal
        )

    def fit(self) -> dict:
        cfg, eval_cfg = self.cfg, self.cfg.eval
        last: dict = {}
        status, outcome = "FAILED", "failed"
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.step == 0 and eval_cfg.val_before_train and "0" not in self.val_history:
                self._log(self.validate())
            if self.step >= cfg.steps:
                log.info("the checkpoint is already at step %d >= steps=%d; nothing to train", self.step, cfg.steps)
            while self.step < cfg.steps:
                if self.stop_signal or ray.get(self.control.should_stop.remote()):
                    log.info("stop requested (%s); checkpointing at step %d", self.stop_signal or "control", self.step)
                    self.save_checkpoint()
                    status, outcome = "KILLED", "stopped"
                    break
                last = self.train_step()
                if eval_cfg.val_every and (self.step % eval_cfg.val_every == 0 or self.step == cfg.steps):
                    last.update(self.validate())
                self._log(last)
                self.control.report.remote(
                    {"step": self.step, "rollout_workers": self.pool.size(), "reward": last["reward/total"]}
                )
                log.info(
                    "step %d/%d reward=%.3f fmt=%.2f acc=%.2f loss=%.4f kl=%.5f lp_diff=%.4f workers=%d %.1fs",
                    self.step,
                    cfg.steps,
                    last["reward/total"],
                    last["reward/format"],
                    last["reward/accuracy"],
                    last["train/loss"],
                    last["train/kl"],
                    last["rollout/logprob_diff_mean"],
                    self.pool.size(),
                    last["time/step"],
                )
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
            else:
                status, outcome = "FINISHED", "completed"
                self._finish()
        except KeyboardInterrupt:
            status, outcome = "KILLED", "interrupted"
            raise
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            if self.tracker:
                self.tracker.set_tags({"outcome": outcome, "steps_done": self.step})
                self.tracker.end(status)
        return last

    def _finish(self) -> None:
        final = self.out / "final_model"
        self.learners.export_hf(str(final))
        summary = self.summary()
        atomic_write(self.out / "summary.json", json.dumps(summary, indent=2))
        png = plot_run(self.out / "metrics.jsonl", self.out / "curves.png")
        for path, where in ((final, "final_model"), (self.out / "summary.json", None), (png, None)):
            if path:
                self.tracker.log_artifacts(str(path), where)
        before, after = summary.get("val_before"), summary.get("val_after")
        if before and after:
            log.info(
                "held-out reward %.4f -> %.4f, accuracy %.4f -> %.4f (before -> after GRPO)",
                before["reward"],
                after["reward"],
                before["accuracy"],
                after["accuracy"],
            )
        log.info("done: %d steps; policy in %s; MLflow run %s", self.step, final, self.tracker.run_id)

    def summary(self) -> dict:
        steps = sorted(self.val_history, key=int)
        return {
            "val_before": self.val_history.get("0"),
            "val_after": self.val_history[steps[-1]] if steps and steps[-1] != "0" else None,
            "val_history": {k: self.val_history[k] for k in steps},
            "steps": self.step,
            "run_id": self.run_id,
            "mlflow_run_id": self.tracker.run_id,
            "final_model": str(self.out / "final_model"),
            "skipped_rows": self.stream.skipped,
        }

    def shutdown(self) -> None:
        try:
            if self.pool:
                self.pool.shutdown()
            if self.learners:
                self.learners.shutdown()
        finally:
            if self.started_ray:
                ray.shutdown()


def _tuple_state(state):
    """JSON turned random.getstate()'s tuples into lists; turn them back."""
    return tuple(_tuple_state(x) for x in state) if isinstance(state, list) else state


def _last_jsonl_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def main_train(cfg: TrainConfig) -> dict:
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.shutdown()


__all__ = ["ConfigError", "GRPOTrainer", "ResumeError", "main_train"]
