"""Pictures of a run: training reward components and validation curves over steps, from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training nodes
import matplotlib.pyplot as plt  # noqa: E402

COMPONENTS = ("total", "format", "count", "accuracy", "spatial")


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(metrics_file: Path, out_png: Path) -> Path | None:
    """Two panels: training reward components per step, and validation reward/accuracy per step. Returns the PNG
    path, or None when there is nothing to plot yet."""
    rows = read_metrics(metrics_file)
    train = [r for r in rows if "reward/total" in r]
    val = [r for r in rows if "val/reward" in r]
    if not train and not val:
        return None
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name in COMPONENTS:
        key = f"reward/{name}"
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            ax_train.plot(*zip(*points), label=name, lw=2 if name == "total" else 1)
    ax_train.set(
        title="training reward components (mean over the step's responses)", xlabel="step", ylim=(-0.02, 1.02)
    )
    ax_train.legend(fontsize=8)
    for key, label in (
        ("val/reward", "reward"),
        ("val/accuracy", "accuracy"),
        ("val/format", "format"),
        ("val/spatial", "spatial"),
    ):
        points = [(r["step"], r[key]) for r in val if key in r]
        if points:
            ax_val.plot(*zip(*points), marker="o", label=label)
    ax_val.set(title="validation (held-out split)", xlabel="step", ylim=(-0.02, 1.02))
    ax_val.legend(fontsize=8)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
