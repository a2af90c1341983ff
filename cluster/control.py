"""The per-run control actor through which a running job is steered from outside (``scripts/scale_rollout.py``):
desired rollout-worker count, stop requests, and the trainer's last status.

Each run has a unique run id (``<output folder name>-<8 hex>``, kept in ``<output_dir>/run.json``); the actor is
named after it, so two jobs never share one, even when their output folders have the same name.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import ray

PREFIX = "spatialthinker-control:"
RUN_FILE = "run.json"


def control_name(run_id: str) -> str:
    return PREFIX + run_id


def new_run_id(output_dir: Path) -> str:
    return f"{output_dir.name}-{uuid.uuid4().hex[:8]}"


def write_run_file(output_dir: Path, run_id: str, namespace: str, ray_address: str) -> None:
    path = output_dir / RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "namespace": namespace, "ray_address": ray_address}, indent=2))
    tmp.replace(path)


def read_run_file(output_dir: Path) -> dict | None:
    path = Path(output_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


@ray.remote(num_cpus=0)
class TrainingControl:
    """Holds what an operator asked for; the driver reads it between steps."""

    def __init__(self, run_id: str, rollout_workers: int, min_workers: int, max_workers: int):
        self.run_id = run_id
        self.desired = int(rollout_workers)
        self.min_workers, self.max_workers = int(min_workers), int(max_workers)
        self.stop = False
        self.status_info: dict = {}

    def set_rollout_workers(self, n: int) -> dict:
        """Ask for ``n`` workers. Returns what will be applied: the request is capped to [min, max] workers and the
        cap is reported, never applied silently."""
        n = int(n)
        if n < 1:
            raise ValueError("rollout worker count must be >= 1")
        self.desired = max(self.min_workers, min(self.max_workers, n))
        note = (
            ""
            if self.desired == n
            else f"capped to {self.desired} (rollout.min_workers={self.min_workers}, "
            f"rollout.max_workers={self.max_workers})"
        )
        return {"requested": n, "accepted": self.desired, "note": note}

    def desired_rollout_workers(self) -> int:
        return self.desired

    def request_stop(self) -> bool:
        self.stop = True
        return True

    def should_stop(self) -> bool:
        return self.stop

    def report(self, info: dict) -> None:
        self.status_info = dict(info)

    def status(self) -> dict:
        return dict(
            self.status_info,
            run_id=self.run_id,
            desired_rollout_workers=self.desired,
            max_workers=self.max_workers,
            stop_requested=self.stop,
        )
