"""Process setup shared by the actors."""

from __future__ import annotations

import os
import socket

import ray
import torch

from actors.logs import setup_worker_logging
from actors.settings import parse_cpu_list


def setup_process(device: str = "auto", threads: int | None = None, cpu_cores: str = "") -> str:
    """Resolve ``device`` (auto, cpu, cuda) and prepare the process: ``DS_ACCELERATOR=cpu`` on CPU (DeepSpeed reads
    it at import, so call this before importing deepspeed), the torch thread count, the cores it may run on
    (``cpu_cores``, a CPU list; see :func:`pin_cores`), and warnings and errors logged with their logger name
    (:func:`actors.logs.setup_worker_logging`)."""
    setup_worker_logging()
    if cpu_cores:
        pin_cores(cpu_cores)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device=cuda was asked for but this process on {node_ip()} sees no GPU")
    if device == "cpu":
        os.environ["DS_ACCELERATOR"] = "cpu"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        torch.set_num_threads(int(threads))
    return device


def pin_cores(cpu_cores: str) -> list[int]:
    """Pin this process (and the processes and threads it starts later) to the cores of the CPU list ``cpu_cores``.
    Raises ``RuntimeError`` naming the cores this node does not have."""
    cores = parse_cpu_list(cpu_cores)
    available = os.sched_getaffinity(0)
    missing = sorted(set(cores) - available)
    if missing:
        raise RuntimeError(
            f"cpu_cores {cpu_cores!r}: cores {missing} are not available to this process on {node_ip()} "
            f"(it may run on {sorted(available)})"
        )
    os.sched_setaffinity(0, cores)
    return cores


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    """This node's address as Ray knows it. No silent fallback to 127.0.0.1: on a multi-node cluster that would
    make learner ranks on other nodes wait for a master they can never reach."""
    try:
        return ray.util.get_node_ip_address()
    except Exception as e:
        raise RuntimeError(f"cannot determine this node's IP address through Ray: {e}") from e
