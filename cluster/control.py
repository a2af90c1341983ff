"""A named control actor through which a running job is steered from
outside (``scripts/scale_rollout.py``): desired rollout-worker count, stop
requests, and the trainer's last status."""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class TrainingControl:
    def __init__(self, rollout_workers: int):
        self.desired = int(rollout_workers)
        self.stop = False
        self.status_info: dict = {}

    def set_rollout_workers(self, n: int) -> int:
        n = int(n)
        if n < 1:
            raise ValueError("rollout worker count must be >= 1")
        self.desired = n
        return n

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
        return dict(self.status_info, desired_rollout_workers=self.desired, stop_requested=self.stop)


def control_name(run_name: str) -> str:
    return f"control:{run_name}"
