"""Process setup shared by the actors."""

from __future__ import annotations

import os
import socket

import ray
import torch

from actors.logs import setup_worker_logging


def setup_process(device: str = "auto", threads: int | None = None) -> str:
    """Resolve ``device`` (auto, cpu, cuda) and prepare the process: ``DS_ACCELERATOR=cpu`` on CPU (DeepSpeed reads
    it at import, so call this before importing deepspeed), the torch thread count, and warnings and errors logged
    with their logger name (:func:`actors.logs.setup_worker_logging`)."""
    setup_worker_logging()
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
