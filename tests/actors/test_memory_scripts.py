"""scripts/gpu_check.py runs its cases end to end on the CPU at a tiny shape (the CUDA run needs a GPU), and the
memory model of scripts/bench_memory.py, fed by its stored measurements, gives every preset role at least 10%
headroom on an 80 GB GPU."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_memory  # noqa: E402

PRESETS = sorted(p for p in (ROOT / "cluster" / "configs").glob("*.yaml") if p.stem != "cpu_demo")  # GPU presets


@pytest.mark.slow
def test_gpu_check_smoke_run_on_cpu():
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--size", "tiny"]
    cmd += ["--layers", "1", "--vision-layers", "1", "--prompt", "48", "--image", "16", "--response", "8"]
    # about 30 s on 2 idle cores (three processes that import transformers and build the model)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(ROOT), check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| learner") or line.startswith("| reference")]
    assert len(rows) == 3, out
    for row in rows:
        peak, seconds = float(row.split("|")[2]), float(row.split("|")[5])
        assert peak > 0 and seconds > 0, row


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_leave_headroom_on_80gb(preset):
    from cluster.config import load_config

    results = bench_memory.load_results()
    coefficients = bench_memory.with_unmeasured_sizes(bench_memory.derive(results), results)
    cfg = load_config(str(preset))
    size = "7b" if "7b" in cfg.model.path.lower() else "3b"
    rows = bench_memory.predict(cfg, size, coefficients, bench_memory.param_counts(size))
    capacity = bench_memory.CAPACITIES["80 GB"]
    for row in rows:
        used = row["bytes"] if row["bytes"] is not None else row["fraction"] * capacity
        assert used <= 0.9 * capacity, (preset.name, row["role"], used / 2**30)


def test_memory_model_is_within_15_percent_of_every_peak_it_was_not_fitted_on():
    results = bench_memory.load_results()
    checks = bench_memory.check_model(results, bench_memory.derive(results))
    assert checks, "no stored measurement left to check the model against"
    for case, measured, predicted in checks:
        assert abs(predicted - measured) <= 0.15 * measured, (case, measured / 2**30, predicted / 2**30)
