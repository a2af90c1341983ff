import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def demo_config(*overrides: str):
    """The CPU demo's config (``cluster/configs/cpu_demo.yaml``, what ``scripts/train.py`` runs without
    ``--config``) with ``key.sub=value`` overrides: the settings classes' defaults are the paper's (a 3B model,
    2,048-token answers, 512-2048 pixel images), too large for tests on the tiny model."""
    from cluster.config import DEMO_CONFIG, load_config

    return load_config(str(DEMO_CONFIG), list(overrides))


def demo(section: str, **changes):
    """One section of the CPU demo's config (``demo("rollout", engine="hf")``), with field changes."""
    import dataclasses

    return dataclasses.replace(getattr(demo_config(), section), **changes)


@pytest.fixture(scope="session")
def stvqa_dir(tmp_path_factory):
    """A small STVQA-7K-format dataset synthesised from synthetic VG scenes."""
    from datagen.stvqa import build_dataset

    root = tmp_path_factory.mktemp("stvqa")
    build_dataset(root / "ds", synthetic_images=40, synthetic_root=root / "vg", seed=3)
    return root / "ds"


@pytest.fixture(scope="session")
def stvqa(stvqa_dir):
    from datagen.stvqa import load_stvqa

    return load_stvqa(str(stvqa_dir), "train")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from actors.model import build_tiny_model
    from datagen.corpus import tokenizer_corpus

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer_corpus())


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        namespace="tests",
        runtime_env={
            "env_vars": {"PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
        },
    )
    yield ray
    ray.shutdown()


def make_requests(rows, k, prefix="t"):
    """Rollout requests for the first ``k`` rows, built the way the trainer builds them."""
    from cluster.trainer import make_request
    from datagen.stvqa import task_fields
    from rewards.prompt import PromptBuilder

    prompts = PromptBuilder(demo("prompt"))
    return [make_request(task_fields(rows[i]), prefix, i, prompts, seed=i) for i in range(k)]
