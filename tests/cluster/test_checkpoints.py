"""Checkpoints are published atomically; resume takes the newest complete one and names what it skips."""

import json
import logging

import pytest

from cluster.checkpoints import STATE_FILE, CheckpointError, CheckpointStore, read_state


def shards(directory, tag):
    """Stands in for DeepSpeed's writer: real files in the folder DeepSpeed would write."""
    from pathlib import Path

    d = Path(directory) / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "mp_rank_00_model_states.pt").write_bytes(b"x" * 10)


def test_publish_then_latest(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    store.root.mkdir()
    for step in (4, 8):
        store.publish(f"step_{step}", shards, {"step": step})
    assert (store.root / "latest").read_text() == "step_8"
    assert read_state(store.root / "step_8")["step"] == 8
    assert not (store.root / ".staging").exists()
    ckpt, state = store.newest_complete()
    assert ckpt.name == "step_8" and state["step"] == 8
    assert store.prune(1) == [4] and store.steps() == [8]


def test_killed_mid_save_falls_back_with_a_warning(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "checkpoints")
    store.root.mkdir()
    store.publish("step_4", shards, {"step": 4})

    def dies(directory, tag):
        shards(directory, tag)
        raise KeyboardInterrupt  # the driver is killed between the shards and the state file

    with pytest.raises(KeyboardInterrupt):
        store.publish("step_8", dies, {"step": 8})
    assert (store.root / "latest").read_text() == "step_4"  # never points at an incomplete checkpoint
    # an older layout (or a crash before this fix) left an incomplete step_8 named as latest
    (store.root / "step_8").mkdir()
    (store.root / "latest").write_text("step_8")
    with caplog.at_level(logging.WARNING):
        ckpt, state = store.newest_complete()
    assert ckpt.name == "step_4" and state["step"] == 4
    assert "step_8 is not a complete checkpoint" in caplog.text


def test_corrupt_state_file_is_named(tmp_path):
    d = tmp_path / "step_3"
    d.mkdir()
    (d / STATE_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{d / STATE_FILE} is corrupt"):
        read_state(d)
    (d / STATE_FILE).write_text(json.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="corrupt"):
        read_state(d)
