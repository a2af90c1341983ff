"""scripts/make_dataset.py: result, count table, exit code 2 with one error line, input safety."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.stvqa import load_stvqa
from tests.datagen.helpers import tree_digest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_dataset.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("make_dataset_cli", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_synthetic_run_prints_table(cli, tmp_path, caplog, capsys):
    out = tmp_path / "ds"
    with caplog.at_level(logging.INFO):
        assert cli.main(["--synthetic", "30", "--out", str(out), "--seed", "1"]) == 0
    assert "relation" in caplog.text and "existence" in caplog.text and "total" in caplog.text
    assert f"to {out}" in capsys.readouterr().out
    assert len(load_stvqa(out, "train")) + len(load_stvqa(out, "val")) == 30
    assert json.loads((out / "stvqa_build.json").read_text())["source"] == "synthetic:30"


def test_vg_root_with_options(cli, vg_root, tmp_path):
    out = tmp_path / "ds"
    argv = ["--vg-root", str(vg_root), "--out", str(out), "--per-image", "2", "--relation-fraction", "0.3",
            "--val-fraction", "0.2", "--limit", "20"]  # fmt: skip
    assert cli.main(argv) == 0
    settings = json.loads((out / "stvqa_build.json").read_text())["settings"]
    assert settings["per_image"] == 2 and settings["relation_fraction"] == 0.3 and settings["val_fraction"] == 0.2
    assert len(load_stvqa(out, "train")) + len(load_stvqa(out, "val")) == 40


def test_bad_json_is_one_line_exit_2(cli, copy_vg, tmp_path, capsys):
    d = copy_vg()
    (d / "objects.json").write_text("[{")
    assert cli.main(["--vg-root", str(d), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys)
    assert "objects.json: invalid JSON" in line
    assert not (tmp_path / "out").exists()


def test_out_inside_input_refused(cli, copy_vg, capsys):
    d = copy_vg()
    before = tree_digest(d)
    for out in (d, d / "stvqa"):
        assert cli.main(["--vg-root", str(d), "--out", str(out), "--overwrite"]) == 2
        assert "input folder" in _error_line(capsys)
    assert tree_digest(d) == before


def test_overwrite_of_foreign_folder_refused(cli, tmp_path, capsys):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"precious")
    assert cli.main(["--synthetic", "5", "--out", str(other), "--overwrite"]) == 2
    assert "not a dataset written by make_dataset" in _error_line(capsys)
    assert (other / "a.jpg").read_bytes() == b"precious"


def test_bad_image_and_allow_flag(cli, copy_vg, tmp_path, capsys):
    d = copy_vg()
    (d / "images" / "9.jpg").write_bytes(b"\x00" * 50)
    assert cli.main(["--vg-root", str(d), "--out", str(tmp_path / "a")]) == 2
    line = _error_line(capsys)
    assert "9.jpg" in line and "image_id=9" in line
    assert cli.main(["--vg-root", str(d), "--out", str(tmp_path / "a"), "--allow-bad-images"]) == 0
    (d / "images" / "9.jpg").unlink()
    assert cli.main(["--vg-root", str(d), "--out", str(tmp_path / "b")]) == 2
    assert "--allow-missing-images" in _error_line(capsys)
    assert cli.main(["--vg-root", str(d), "--out", str(tmp_path / "b"), "--allow-missing-images"]) == 0


def test_bad_settings(cli, tmp_path, capsys):
    assert cli.main(["--synthetic", "5", "--out", str(tmp_path / "x"), "--relation-fraction", "2"]) == 2
    assert "relation_fraction" in _error_line(capsys)
    assert cli.main(["--synthetic", "5", "--out", str(tmp_path / "x"), "--categories", "relation,colour"]) == 2
    assert "colour" in _error_line(capsys)


def test_subprocess_has_no_traceback(copy_vg, tmp_path):
    d = copy_vg()
    (d / "image_data.json").write_text(json.dumps([{"image_id": 1, "width": 0, "height": 5}]))
    cmd = [sys.executable, str(SCRIPT), "--vg-root", str(d), "--out", str(tmp_path / "o")]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {d / 'image_data.json'}: entry 0 (image_id=1): field 'width' must be >= 1, got 0"
    ]
