import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(scope="session")
def vg_dir(tmp_path_factory):
    from datagen.synthetic import generate_vg_scenes

    return generate_vg_scenes(tmp_path_factory.mktemp("vg"), 12, seed=3)


@pytest.fixture(scope="session")
def stvqa_dir(vg_dir, tmp_path_factory):
    from datagen.build import build_from_vg

    out = tmp_path_factory.mktemp("stvqa") / "ds"
    build_from_vg(vg_dir, out, seed=0, max_scene_objects=4)
    return out


@pytest.fixture(scope="session")
def stvqa(stvqa_dir):
    from datagen.build import load_stvqa

    return load_stvqa(stvqa_dir)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from actors.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        namespace="tests",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}},
    )
    yield ray
    ray.shutdown()


def make_request(row, i=0):
    from actors.rollout import stvqa_request

    return stvqa_request(row, f"t{i}", i)
