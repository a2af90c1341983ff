"""Process setup shared by the actors."""

from __future__ import annotations

import os
import socket


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def setup_process(device: str = "auto", threads: int | None = None) -> str:
    """Resolve ``device`` ("auto", "cpu", "cuda") and prepare the process:
    DS_ACCELERATOR=cpu on CPU, torch thread count.  Call before importing
    deepspeed."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        os.environ["DS_ACCELERATOR"] = "cpu"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return device


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return "127.0.0.1"
