"""Shared fixtures of the datagen tests: synthetic VG folders and a built dataset (session-scoped, read-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from datagen.build import build_from_vg
from datagen.synthetic import generate_vg_scenes
from datagen.vg import load_visual_genome


@pytest.fixture(scope="session")
def vg_root(tmp_path_factory) -> Path:
    """60 synthetic VG scenes (do not modify: copy with ``copy_vg`` first)."""
    return generate_vg_scenes(tmp_path_factory.mktemp("vg") / "vg", 60, seed=7)


@pytest.fixture(scope="session")
def vg_images(vg_root):
    """The scene graphs of ``vg_root``."""
    return load_visual_genome(vg_root)


@pytest.fixture(scope="session")
def built(vg_root, tmp_path_factory) -> Path:
    """A dataset built from ``vg_root`` with the default settings."""
    out = tmp_path_factory.mktemp("built") / "stvqa"
    build_from_vg(vg_root, out, seed=0)
    return out


@pytest.fixture
def copy_vg(vg_root, tmp_path):
    """A writable copy of ``vg_root``."""

    def make(name: str = "vg") -> Path:
        dst = tmp_path / name
        shutil.copytree(vg_root, dst)
        return dst

    return make
