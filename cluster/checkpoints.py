"""Checkpoints that are published atomically.

A checkpoint is written into ``checkpoints/.staging/step_N`` (DeepSpeed shards, then ``trainer_state.json`` last),
renamed to ``checkpoints/step_N`` in one step, and only then named in ``checkpoints/latest``. A driver killed at any
moment therefore leaves either the previous checkpoint as latest or the new one complete; resume takes the newest
complete checkpoint and warns about anything it skips.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
KILL_POINT_ENV = "SPATIALTHINKER_KILL_AFTER_SHARDS"
"""Fault injection for tests: when set to a tag (``step_2``), the process SIGKILLs itself after writing that
checkpoint's shards and before its trainer state, the moment a real crash hurts most."""
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the folder or file."""


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_state(ckpt: Path) -> dict:
    """The trainer state of a checkpoint folder; :class:`CheckpointError` naming the file if absent or corrupt."""
    f = ckpt / STATE_FILE
    if not f.is_file():
        raise CheckpointError(f"{ckpt} is not a complete checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(f.read_text())
    except ValueError as e:
        raise CheckpointError(f"{f} is corrupt ({e})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{f} is corrupt (no 'step')")
    return state


class CheckpointStore:
    """The ``checkpoints/`` folder of a run."""

    def __init__(self, root: Path):
        self.root = root
        self.staging = root / ".staging"

    def steps(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())

    def has_any(self) -> bool:
        return bool(self.steps()) or (self.root / "latest").exists()

    def newest_complete(self) -> tuple[Path, dict] | None:
        """The newest checkpoint with a readable trainer state; a warning names each newer one it skips."""
        latest = self.root / "latest"
        named = latest.read_text().strip() if latest.is_file() else None
        for step in reversed(self.steps()):
            ckpt = self.root / f"step_{step}"
            try:
                state = read_state(ckpt)
            except CheckpointError as e:
                log.warning("skipping checkpoint: %s", e)
                continue
            if named and named != ckpt.name:
                log.warning("checkpoints/latest names %s, resuming from the newest complete one, %s", named, ckpt.name)
            return ckpt, state
        return None

    def publish(self, tag: str, save_shards, state: dict) -> Path:
        """``save_shards(directory, tag)`` writes the DeepSpeed shards; then the state; then the atomic rename."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        save_shards(str(self.staging), tag)
        if os.environ.get(KILL_POINT_ENV) == tag:
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write(self.staging / tag / STATE_FILE, json.dumps(state, indent=2))
        final = self.root / tag
        if final.exists():  # a redone step after a resume: replace the old copy
            shutil.rmtree(final)
        os.replace(self.staging / tag, final)
        atomic_write(self.root / "latest", tag)
        shutil.rmtree(self.staging, ignore_errors=True)
        return final

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` checkpoints (0 keeps all)."""
        if keep <= 0:
            return []
        old = self.steps()[:-keep]
        for step in old:
            shutil.rmtree(self.root / f"step_{step}", ignore_errors=True)
        return old
