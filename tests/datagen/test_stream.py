"""The streamed builder: same dataset as the in-memory builder, same errors, output safety, kill -9 and resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from datagen.build import MARKER, BuildError, BuildSettings, build_from_vg
from datagen.stream import StreamSettings, build_streamed
from datagen.stvqa import load_stvqa
from datagen.synthetic import generate_vg_scale_input
from datagen.vg import VGFormatError
from tests.datagen.helpers import tree_digest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_dataset.py"


def _rows(path) -> dict:
    """Every row of both splits, images undecoded (bytes); writes no cache file into the dataset folder."""
    return {split: load_stvqa(path, split).to_list() for split in ("train", "val")}


def test_streamed_equals_in_memory_builder(vg_root, built, tmp_path):
    out = tmp_path / "s"
    counts = build_streamed(vg_root, out, stream=StreamSettings(workers=2, rows_per_shard=7, chunk_images=9))
    assert _rows(out) == _rows(built)
    assert counts == {k: len(v) for k, v in _rows(built).items()}
    assert len(list((out / "train").glob("data-*.arrow"))) == -(-counts["train"] // 7)
    marker = json.loads((out / MARKER).read_text())
    assert marker["counts"] == counts and marker["settings"]["seed"] == 0 and marker["builder"] == "streamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no work or temporary folder left


def test_streamed_equals_with_other_settings_and_bad_image(copy_vg, tmp_path, caplog):
    d = copy_vg()
    (d / "images" / "9.jpg").write_bytes((d / "images" / "9.jpg").read_bytes()[:300])  # header fine, body cut
    settings = BuildSettings(seed=3, per_image=2, relation_fraction=0.3, allow_bad_images=True)
    ref = tmp_path / "ref"
    build_from_vg(d, ref, seed=3, per_image=2, relation_fraction=0.3, allow_bad_images=True)
    with caplog.at_level(logging.WARNING):
        build_streamed(d, tmp_path / "s", settings=settings, stream=StreamSettings(workers=1, rows_per_shard=11))
    assert "image_id=9: cannot read image" in caplog.text
    assert _rows(tmp_path / "s") == _rows(ref)
    with pytest.raises(VGFormatError, match=r"9\.jpg: image_id=9: cannot read image"):
        build_streamed(d, tmp_path / "t", stream=StreamSettings(workers=2))
    assert not (tmp_path / "t").exists() and not (tmp_path / ".t.partial").exists()


def test_streamed_errors_are_the_same_one_line_errors(copy_vg, tmp_path):
    d = copy_vg()
    (d / "objects.json").write_text('[{"image_id": 1,')
    with pytest.raises(VGFormatError, match=r"objects.json: invalid JSON"):
        build_streamed(d, tmp_path / "o", stream=StreamSettings(workers=1))
    d = copy_vg("vg2")
    objs = json.loads((d / "objects.json").read_text())
    objs[2]["objects"][0].pop("w")
    (d / "objects.json").write_text(json.dumps(objs))
    with pytest.raises(VGFormatError, match=r"entry 2 \(image_id=3\) object 0: missing field 'w'$"):
        build_streamed(d, tmp_path / "o", stream=StreamSettings(workers=2, chunk_images=5))
    (d / "objects.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(VGFormatError, match="top level must be a JSON list"):
        build_streamed(d, tmp_path / "o")
    d = copy_vg("vg3")
    (d / "images" / "4.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*: 4 .*--allow-missing-images"):
        build_streamed(d, tmp_path / "o")
    build_streamed(d, tmp_path / "o", require_images=False, stream=StreamSettings(workers=1))
    ids = {r["image_id"] for split in _rows(tmp_path / "o").values() for r in split}
    assert "4" not in ids and len(ids) == 59
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "vg", "vg2", "vg3"]


def test_streamed_output_safety(vg_root, tmp_path):
    before = tree_digest(vg_root)
    with pytest.raises(BuildError, match="input folder"):
        build_streamed(vg_root, vg_root / "out", overwrite=True)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"precious")
    with pytest.raises(BuildError, match="not a dataset written by make_dataset"):
        build_streamed(vg_root, other, overwrite=True)
    assert (other / "a.jpg").read_bytes() == b"precious" and tree_digest(vg_root) == before
    out = tmp_path / "ds"
    build_streamed(vg_root, out, settings=BuildSettings(seed=1), stream=StreamSettings(workers=1))
    with pytest.raises(BuildError, match="pass --overwrite"):
        build_streamed(vg_root, out)
    build_streamed(vg_root, out, settings=BuildSettings(seed=2), overwrite=True, stream=StreamSettings(workers=1))
    assert json.loads((out / MARKER).read_text())["settings"]["seed"] == 2


@pytest.fixture(scope="module")
def vg_dense(tmp_path_factory) -> Path:
    """300 images at Visual Genome density (35 objects, 21 relationships, 500x375 JPEGs, symlinked)."""
    return generate_vg_scale_input(tmp_path_factory.mktemp("dense") / "vg", 300, seed=1, distinct_images=4)


@pytest.mark.slow
def test_kill_9_during_the_build_and_resume(vg_dense, tmp_path, caplog):
    out = tmp_path / "ds"
    work = tmp_path / ".ds.partial"
    cmd = [sys.executable, str(SCRIPT), "--vg-root", str(vg_dense), "--out", str(out), "--workers", "2",
           "--rows-per-shard", "3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shards, deadline = [], time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            shards = sorted((work / "shards").glob("*.arrow")) if work.is_dir() else []
            if len(shards) >= 3:
                break
            time.sleep(0.005)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(shards) >= 3 and not out.exists(), proc.stderr.read().decode()[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=15)  # the workers end themselves when the build is gone
    assert not alive, alive
    done = sorted((work / "shards").glob("*.arrow"))
    inodes = {p.name: p.stat().st_ino for p in done}

    with caplog.at_level(logging.INFO, logger="datagen"):
        counts = build_streamed(vg_dense, out, stream=StreamSettings(workers=1, rows_per_shard=3))
    total = sum(-(-n // 3) for n in counts.values())
    assert len(done) < total  # the kill came mid-way
    assert "resuming the unfinished build" in caplog.text
    assert f"shards: {len(done)} of {total} already written" in caplog.text
    for name, ino in inodes.items():  # finished shards were kept, not rewritten
        split, k = name[:-6].split("-")
        assert (out / split / f"data-{int(k):05d}-of-{-(-counts[split] // 3):05d}.arrow").stat().st_ino == ino
    assert not work.exists()
    ref = tmp_path / "ref"
    build_from_vg(vg_dense, ref)
    assert _rows(out) == _rows(ref)
