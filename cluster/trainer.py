"""The GRPO driver: owns the actor pools and runs steps.

One step::

    prompts --> RolloutPool (elastic) --ObjectRef--> RewardWorkers --> rewards --> group advantages
                                   \\--ObjectRef--> ReferencePolicy --> ref log-probs (ObjectRefs)
    LearnerWorkers (ZeRO-3) <-- ObjectRefs of trajectories + ref log-probs + advantages
    LearnerWorkers --gathered state dict (ObjectRef)--> RolloutWorkers  (weight sync)

Trajectories (token ids, pixel tensors) never pass through the driver: it
holds only ObjectRefs and the small reward dicts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import ray

from cluster.config import TrainConfig, flatten

log = logging.getLogger("spatialthinker")
REPO_ROOT = str(Path(__file__).resolve().parents[1])


class ResumeError(RuntimeError):
    pass


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_model(cfg: TrainConfig, dataset_path: str) -> str:
    """The policy checkpoint: ``model.path``, or the tiny model built (and
    format-warm-started) once under the output dir."""
    from actors.model import TinyModelSpec, build_tiny_model, check_model_dir

    if cfg.model.path:
        return str(check_model_dir(cfg.model.path).resolve())
    out = Path(cfg.output_dir) / "tiny_model"
    done = out / "warm_start.json"
    if done.exists():
        return str(out)
    spec = TinyModelSpec(hidden_size=cfg.model.tiny_hidden_size, num_layers=cfg.model.tiny_layers, seed=cfg.seed)
    path = build_tiny_model(out, spec)
    from actors.warmstart import sft_warm_start
    from datagen.build import load_stvqa

    info = sft_warm_start(path, load_stvqa(dataset_path, cfg.data.split), steps=cfg.model.warm_start_steps, lr=cfg.model.warm_start_lr, seed=cfg.seed)
    _atomic_write(done, json.dumps(info))
    print(f"[spatialthinker] built tiny model in {path} (warm start: {info})", flush=True)
    return path


def prepare_dataset(cfg: TrainConfig) -> str:
    from datagen.build import build_from_vg

    if cfg.data.dataset:
        p = Path(cfg.data.dataset)
        if not p.exists():
            raise FileNotFoundError(f"data.dataset {p} does not exist; build one with scripts/make_dataset.py")
        return str(p.resolve())
    out = Path(cfg.output_dir) / "data" / "stvqa"
    if (out / "dataset_dict.json").exists():
        return str(out)
    if cfg.data.vg_root:
        root = Path(cfg.data.vg_root)
    else:
        from datagen.synthetic import generate_vg_scenes

        root = Path(cfg.output_dir) / "data" / "vg_synthetic"
        if not (root / "image_data.json").exists():
            generate_vg_scenes(root, cfg.data.synthetic_images, seed=cfg.seed)
    build_from_vg(
        root, out, seed=cfg.seed, max_per_image=cfg.data.max_questions_per_image,
        max_scene_objects=cfg.data.max_scene_objects, overwrite=True,
    )
    return str(out)


def init_ray(cfg: TrainConfig) -> bool:
    """Connect to a cluster (config, or RAY_ADDRESS as set by ``ray job
    submit``) or start a local one.  Returns True if we started it."""
    if ray.is_initialized():
        return False
    addr = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if addr:
        ray.init(address=addr, namespace=cfg.namespace, log_to_driver=True)
        return False
    pp = os.pathsep.join([REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(
        num_cpus=cfg.ray_num_cpus or max(4, os.cpu_count() or 1),
        namespace=cfg.namespace,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": pp, "TOKENIZERS_PARALLELISM": "false"}},
    )
    return True


class GRPOTrainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.out = Path(cfg.output_dir).resolve()
        self.ckpt_root = self.out / "checkpoints"
        self.step = 0
        self.epoch = 0
        self.pos = 0
        self.version = 0
        self.started_ray = False
        self.pool = None
        self.learners: list = []
        self.tracker = None
        self._order: list[int] = []

    # -- setup ----------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        cfg.output_dir = str(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_name = cfg.run_name or self.out.name
        resume = self._find_resume()
        state = self._read_state(resume) if resume else None
        self.dataset_path = prepare_dataset(cfg)
        self.model_path = state["model_path"] if state else prepare_model(cfg, self.dataset_path)
        from datagen.build import load_stvqa

        self.dataset = load_stvqa(self.dataset_path, cfg.data.split)
        if len(self.dataset) < cfg.algo.prompts_per_step:
            raise ValueError(f"dataset split has {len(self.dataset)} rows, fewer than algo.prompts_per_step={cfg.algo.prompts_per_step}")
        self.started_ray = init_ray(cfg)
        self._start_actors()
        from cluster.tracking import Tracker, default_uri

        self.tracker = Tracker(
            cfg.mlflow_tracking_uri or default_uri(str(self.out)), cfg.experiment_name, self.run_name,
            run_id=state.get("mlflow_run_id") if state else None,
        )
        self.tracker.log_params(flatten(cfg.to_dict()))
        self.tracker.set_tags({"model_path": self.model_path, "dataset": self.dataset_path, "ray_address": ray.get_runtime_context().gcs_address})
        if state:
            self._restore(resume, state)
        _atomic_write(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))

    def _start_actors(self) -> None:
        from actors.learner import LearnerWorker, ReferencePolicy
        from actors.reward_worker import RewardWorker
        from cluster.control import TrainingControl, control_name
        from cluster.pool import RolloutPool

        cfg = self.cfg
        r, lc, rf = cfg.rollout, cfg.learner, cfg.reference
        self.control = TrainingControl.options(name=control_name(self.run_name), get_if_exists=True).remote(r.num_workers)
        ray.get(self.control.set_rollout_workers.remote(r.num_workers))
        self.reward_workers = [
            RewardWorker.options(num_cpus=cfg.reward.num_cpus).remote(cfg.reward.reward_kwargs()) for _ in range(cfg.reward.num_workers)
        ]
        self.reference = None
        if cfg.algo.kl_beta > 0:
            self.reference = ReferencePolicy.options(num_cpus=rf.num_cpus, num_gpus=rf.num_gpus).remote(
                self.model_path,
                {"device": rf.device, "torch_threads": rf.torch_threads, "micro_batch_size": rf.micro_batch_size, "temperature": r.temperature},
            )
        lcfg = dict(vars(lc), temperature=r.temperature)
        loss_cfg = {"clip_eps": cfg.algo.clip_eps, "clip_eps_high": cfg.algo.clip_eps_high, "kl_beta": cfg.algo.kl_beta, "token_mean": cfg.algo.token_mean}
        self.learners = [
            LearnerWorker.options(num_cpus=lc.num_cpus, num_gpus=lc.num_gpus).remote(k, lc.num_workers, self.model_path, lcfg, loss_cfg, cfg.seed)
            for k in range(lc.num_workers)
        ]
        master = ray.get(self.learners[0].master_address.remote())
        self.samples_per_rank = cfg.samples_per_step // lc.num_workers
        self.learner_info = ray.get([l.init.remote(master, self.samples_per_rank) for l in self.learners])
        self.pool = RolloutPool(
            model_path=self.model_path, cfg=vars(r), num_cpus=r.num_cpus, num_gpus=r.num_gpus,
            min_workers=r.min_workers, max_workers=r.max_workers, max_task_retries=r.max_task_retries, seed=cfg.seed,
        )
        self.pool.add_workers(r.num_workers)
        ray.get([w.ready.remote() for w in self.reward_workers] + ([self.reference.ready.remote()] if self.reference else []))

    # -- checkpoints ----------------------------------------------------------------
    def _find_resume(self) -> Path | None:
        res = self.cfg.resume
        if res == "never":
            if (self.ckpt_root / "latest").exists():
                raise ResumeError(
                    f"{self.out} already holds checkpoints; use resume=auto to continue it or choose another output_dir"
                )
            return None
        if res == "auto":
            latest = self.ckpt_root / "latest"
            if not latest.exists():
                return None
            return self.ckpt_root / latest.read_text().strip()
        return Path(res).resolve()

    def _read_state(self, ckpt: Path) -> dict:
        f = ckpt / "trainer_state.json"
        if not f.exists():
            raise ResumeError(f"{ckpt} is not a complete checkpoint (no trainer_state.json)")
        state = json.loads(f.read_text())
        if state.get("learner_world_size") != self.cfg.learner.num_workers:
            raise ResumeError(
                f"checkpoint {ckpt} was written by {state.get('learner_world_size')} learner ranks; "
                f"set learner.num_workers={state.get('learner_world_size')} to resume it"
            )
        return state

    def _restore(self, ckpt: Path, state: dict) -> None:
        ray.get([l.load_checkpoint.remote(str(ckpt.parent), ckpt.name) for l in self.learners])
        self.step, self.epoch, self.pos, self.version = state["step"], state["epoch"], state["pos"], state["version"]
        self._sync_weights()
        log.info("resumed from %s at step %d", ckpt, self.step)
        print(f"[spatialthinker] resumed from {ckpt} at step {self.step}", flush=True)

    def save_checkpoint(self) -> Path:
        tag = f"step_{self.step}"
        ray.get([l.save_checkpoint.remote(str(self.ckpt_root), tag) for l in self.learners])
        state = {
            "step": self.step, "epoch": self.epoch, "pos": self.pos, "version": self.version,
            "mlflow_run_id": self.tracker.run_id if self.tracker else None, "model_path": self.model_path,
            "dataset_path": self.dataset_path, "learner_world_size": self.cfg.learner.num_workers, "time": time.time(),
        }
        d = self.ckpt_root / tag
        _atomic_write(d / "trainer_state.json", json.dumps(state, indent=2))
        _atomic_write(self.ckpt_root / "latest", tag)
        return d

    # -- data -----------------------------------------------------------------------
    def _next_rows(self, k: int) -> list[dict]:
        rows = []
        n = len(self.dataset)
        while len(rows) < k:
            if not self._order or len(self._order) != n:
                self._order = list(range(n))
                if self.cfg.data.shuffle:
                    random.Random(self.cfg.seed * 100003 + self.epoch).shuffle(self._order)
            if self.pos >= n:
                self.epoch += 1
                self.pos = 0
                self._order = []
                continue
            rows.append(self.dataset[self._order[self.pos]])
            self.pos += 1
        return rows

    def _request(self, row: dict, i: int) -> dict:
        from actors.rollout import stvqa_request

        return stvqa_request(row, f"s{self.step}-{row.get('id', i)}", i)

    # -- step -----------------------------------------------------------------------
    def _sync_weights(self) -> None:
        refs = [l.get_weights.remote() for l in self.learners]
        self.pool.sync_weights(refs[0], self.version)
        ray.get(refs[1:])

    def _apply_scaling(self) -> None:
        desired = ray.get(self.control.desired_rollout_workers.remote())
        if desired != self.pool.size():
            before = self.pool.size()
            after = self.pool.scale_to(desired)
            print(f"[spatialthinker] rollout workers {before} -> {after}", flush=True)

    def train_step(self) -> dict:
        from actors.grpo import group_advantages

        cfg = self.cfg
        G = cfg.rollout.group_size
        t0 = time.time()
        self._apply_scaling()
        rows = self._next_rows(cfg.algo.prompts_per_step)
        groups = [[self._request(r, i)] for i, r in enumerate(rows)]
        results = self.pool.generate(groups, G)
        t_gen = time.time() - t0
        traj_refs = [g.trajectories for g in results]
        reward_refs = [self.reward_workers[i % len(self.reward_workers)].score.remote(ref) for i, ref in enumerate(traj_refs)]
        ref_refs = [self.reference.compute_logprobs.remote(ref) for ref in traj_refs] if self.reference else None
        rewards = ray.get(reward_refs)
        advantages = [group_advantages([b["total"] for b in grp], [0] * len(grp), scale=cfg.algo.scale_advantages) for grp in rewards]
        t_rew = time.time() - t0 - t_gen
        c = cfg.algo.prompts_per_step // cfg.learner.num_workers
        stats = ray.get(
            [
                l.train_step.remote(
                    traj_refs[k * c : (k + 1) * c], ref_refs[k * c : (k + 1) * c] if ref_refs else None, advantages[k * c : (k + 1) * c]
                )
                for k, l in enumerate(self.learners)
            ]
        )
        t_train = time.time() - t0 - t_gen - t_rew
        self.step += 1
        self.version += 1
        self._sync_weights()
        t_sync = time.time() - t0 - t_gen - t_rew - t_train
        flat = [b for grp in rewards for b in grp]
        n = len(flat)
        metrics = {f"reward/{k}": sum(b[k] for b in flat) / n for k in ("total", "format", "count", "accuracy", "spatial")}
        metrics.update({f"train/{k}": sum(s[k] for s in stats) / len(stats) for k in ("loss", "kl", "clip_frac", "ratio_mean", "grad_norm")})
        metrics["train/lr"] = stats[0]["lr"]
        metrics["rollout/response_tokens_mean"] = sum(g.summary["response_tokens"] for g in results) / n
        metrics["rollout/workers"] = self.pool.size()
        metrics["rollout/groups_with_signal"] = sum(1 for a in advantages if any(abs(x) > 0 for x in a)) / len(advantages)
        metrics.update({"time/generate": t_gen, "time/reward": t_rew, "time/train": t_train, "time/sync": t_sync, "time/step": time.time() - t0})
        metrics["data/epoch"] = self.epoch
        return metrics

    # -- main loop --------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        last: dict = {}
        status = "FINISHED"
        try:
            if self.step >= cfg.steps:
                print(f"[spatialthinker] checkpoint is already at step {self.step} >= steps={cfg.steps}; nothing to train", flush=True)
            while self.step < cfg.steps:
                if ray.get(self.control.should_stop.remote()):
                    print("[spatialthinker] stop requested; checkpointing", flush=True)
                    self.save_checkpoint()
                    break
                last = self.train_step()
                self.tracker.log_metrics(last, self.step)
                with open(self.out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": self.step, **last}) + "\n")
                self.control.report.remote({"step": self.step, "rollout_workers": self.pool.size(), "reward": last["reward/total"]})
                print(
                    f"[spatialthinker] step {self.step}/{cfg.steps} reward={last['reward/total']:.3f} "
                    f"fmt={last['reward/format']:.2f} acc={last['reward/accuracy']:.2f} loss={last['train/loss']:.4f} "
                    f"kl={last['train/kl']:.5f} workers={self.pool.size()} {last['time/step']:.1f}s",
                    flush=True,
                )
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    d = self.save_checkpoint()
                    print(f"[spatialthinker] checkpoint {d}", flush=True)
            final = self.out / "final_model"
            ray.get([l.export_hf.remote(str(final)) for l in self.learners])
            self.tracker.log_artifacts(str(final), "final_model")
            self.tracker.set_tags({"final_model": str(final), "steps_done": self.step})
            print(f"[spatialthinker] done: {self.step} steps; policy in {final}; MLflow run {self.tracker.run_id}", flush=True)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if self.tracker:
                self.tracker.end(status)
        return last

    def shutdown(self) -> None:
        try:
            if self.pool:
                self.pool.shutdown()
            for a in self.learners:
                try:
                    ray.get(a.shutdown.remote(), timeout=30)
                except Exception:
                    pass
                ray.kill(a)
        finally:
            if self.started_ray:
                ray.shutdown()


def main_train(cfg: TrainConfig) -> dict:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trainer = GRPOTrainer(cfg)
    try:
        trainer.setup()
        return trainer.run()
    finally:
        trainer.shutdown()
