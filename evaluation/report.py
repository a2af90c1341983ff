"""Scoring and the report: each response scored against its row, per-benchmark accuracy and official aggregates, and
the report as a table, JSON and MLflow metrics.

* :func:`score_row` scores one output: standard letter / yes-no / open-answer extraction, or ``paper_scoring=True``
  for the public SpatialThinker script's scoring, defects included (see :mod:`evaluation.answers`);
* :func:`aggregate` gives, per benchmark: accuracy with its standard error, per-task accuracy, extraction failures,
  the benchmark module's official aggregates (:attr:`evaluation.base.Benchmark.official`: CV-Bench's source-balanced
  formula, BLINK's task mean, MMVP pair accuracy, HallusionBench aAcc/fAcc/qAcc, MME-RealWorld perception/reasoning,
  MM-Star l2, 3DSRBench flip/circular, STVQA reward terms ...) and, in paper mode, per-task accuracy over the script's
  hard-coded denominators (``paper_task/<task>``);
* :func:`evaluate_rows` scores a list of rows and outputs into an :class:`EvalReport`, which prints as a table
  (:meth:`EvalReport.table`, each benchmark's headline metric beside plain accuracy), writes JSON
  (:meth:`EvalReport.write`, with the per-sample records in a ``.samples.jsonl`` beside it) and logs MLflow metrics
  ``eval/<benchmark>/<metric>`` (:func:`log_mlflow`).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.answers import PAPER_FAILED, answer_span, extract_choice, match_open, paper_score, yes_no_answer
from evaluation.base import BenchmarkRow, SampleResult, accuracy
from evaluation.registry import BENCHMARKS
from rewards.spatial import RewardConfig, compute_reward


def score_row(row: BenchmarkRow, output: str | None, *, paper_scoring: bool = False) -> SampleResult:
    """Score one output. Paper mode applies the script's branch where the script covers the benchmark
    (``row.paper_branch``); other rows are scored the standard way and say so in ``scoring``."""
    output = output or ""
    if paper_scoring and row.paper_branch:
        ps = paper_score(output, row.paper_answer, branch=row.paper_branch, choices=row.paper_choices)
        return SampleResult(
            row.benchmark, row.id, row.category, ps.ground_truth, ps.prediction, ps.correct, "paper", output
        )
    if row.answer_type == "mcq":
        pred = extract_choice(output, row.options)
        correct = pred is not None and pred == row.answer
    elif row.answer_type == "yesno":
        pred = yes_no_answer(output, row.options)
        correct = pred is not None and pred == row.answer
    else:
        span = answer_span(output)
        pred = span or None
        correct = match_open(output, row.answer)
    return SampleResult(row.benchmark, row.id, row.category, row.answer, pred, bool(correct), "standard", output)


@dataclass
class BenchmarkResult:
    """Scores of one benchmark."""

    name: str
    scoring: str
    """``standard``, ``paper`` or ``paper+standard`` (paper mode with rows the script does not cover)."""
    n: int
    correct: int
    accuracy: float
    stderr: float
    extraction_failures: int
    tasks: dict[str, dict] = field(default_factory=dict)
    """Per task/category: ``{"n", "correct", "accuracy"}``."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Official aggregates and breakdowns (module docstring)."""
    truncated: int = 0
    """Responses cut at the token limit (when the engine reported it)."""

    def flat(self) -> dict[str, float]:
        """Metric name -> value, for MLflow and comparisons."""
        out = {"accuracy": self.accuracy, "stderr": self.stderr, "n": self.n}
        out["extraction_failures"] = self.extraction_failures
        out.update(self.metrics)
        for task, t in self.tasks.items():
            out[f"task/{task}"] = t["accuracy"]
        return out


def aggregate(name: str, rows: list[BenchmarkRow], results: list[SampleResult]) -> BenchmarkResult:
    """Accuracy, standard error, per-task accuracy and official aggregates of one benchmark's scored rows."""
    n, c, acc = accuracy(s.correct for s in results)
    stderr = math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    by_task = defaultdict(list)
    for r, s in zip(rows, results):
        by_task[r.category or "all"].append(s.correct)
    tasks = {}
    for task in sorted(by_task):
        tn, tc, ta = accuracy(by_task[task])
        tasks[task] = {"n": tn, "correct": tc, "accuracy": ta}
    spec = BENCHMARKS.get(name)
    metrics = dict(spec.official(rows, results)) if spec and spec.official else {}
    modes = sorted({s.scoring for s in results})
    scoring = "+".join(modes) if modes else "standard"
    if "paper" in modes:
        table = spec.paper_tasks if spec else None
        for task, count in (table or {}).items():
            denom = min(count, n)
            metrics[f"paper_task/{task}"] = min(max(tasks.get(task, {}).get("correct", 0) / denom, 0.0), 1.0)
    fails = sum(1 for s in results if s.prediction is None or s.prediction == PAPER_FAILED)
    truncated = sum(1 for s in results if s.finish_reason == "length")
    return BenchmarkResult(name, scoring, n, c, acc, stderr, fails, tasks, metrics, truncated)


@dataclass
class EvalReport:
    """The result of an evaluation: per-benchmark results and per-sample records."""

    mode: str
    """``standard`` or ``paper``."""
    benchmarks: dict[str, BenchmarkResult]
    samples: list[SampleResult] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    """Run details (model, engine, temperature, sources, ...)."""

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Flat ``<prefix>/<benchmark>/<metric>`` -> value (finite values only)."""
        out = {}
        for name, res in self.benchmarks.items():
            for k, v in res.flat().items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    out[f"{prefix}/{name}/{k}"] = float(v)
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (without the per-sample records)."""
        return {
            "mode": self.mode,
            "info": self.info,
            "benchmarks": {k: asdict(v) for k, v in self.benchmarks.items()},
        }

    def table(self) -> str:
        """A fixed-width table: one line per benchmark (accuracy in %, the official metric beside it), then the
        per-task accuracies."""
        head = f"{'benchmark':<20} {'scoring':<15} {'n':>6} {'acc%':>7} {'±se':>6} {'fail':>5}  official"
        lines = [f"evaluation ({self.mode} scoring)", head, "-" * len(head)]
        for name, r in self.benchmarks.items():
            spec = BENCHMARKS.get(name)
            key = spec.headline if spec else None
            extra = [f"{key}={100 * r.metrics[key]:.2f}"] if key and key in r.metrics else []
            for k in spec.shown if spec else ():
                if k in r.metrics and k != key:
                    scale = 1 if k.startswith("reward") else 100
                    extra.append(f"{k}={scale * r.metrics[k]:.{3 if scale == 1 else 2}f}")
            lines.append(
                f"{name:<20} {r.scoring:<15} {r.n:>6} {100 * r.accuracy:>7.2f} {100 * r.stderr:>6.2f} "
                f"{r.extraction_failures:>5}  {' '.join(extra)}"
            )
        lines.append("")
        lines.append("per task (acc%, n):")
        for name, r in self.benchmarks.items():
            parts = [f"{task} {100 * t['accuracy']:.2f} ({t['n']})" for task, t in r.tasks.items()]
            lines.append(f"  {name:<18} " + "; ".join(parts))
        return "\n".join(lines)

    def write(self, path: str | Path, *, samples: bool = True) -> Path:
        """Write the report JSON to ``path`` and, with ``samples``, the per-sample records to
        ``<path stem>.samples.jsonl`` beside it. Returns the JSON path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(_finite(self.to_dict()), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if samples:
            with p.with_suffix(".samples.jsonl").open("w", encoding="utf-8") as f:
                for s in self.samples:
                    f.write(json.dumps(_finite(asdict(s))) + "\n")
        return p


def _finite(obj):
    """NaN/inf -> None, so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def evaluate_rows(
    rows: Sequence[BenchmarkRow],
    outputs: Sequence[str | None] | Mapping,
    *,
    paper_scoring: bool = False,
    reward_cfg: RewardConfig | None = None,
    finish_reasons: Sequence[str] | None = None,
    info: dict | None = None,
) -> EvalReport:
    """Score ``outputs`` against ``rows`` and aggregate per benchmark.

    ``outputs`` is a list aligned with ``rows``, or a mapping keyed by ``(benchmark, id)`` or by ``id``. A row
    without an output is scored as an empty response (wrong). STVQA rows also get the reward terms of
    :func:`rewards.spatial.compute_reward` (``reward_cfg``: the paper's defaults when None).
    """
    if isinstance(outputs, Mapping):
        texts = [outputs.get(r.key, outputs.get(r.id)) for r in rows]
    else:
        if len(outputs) != len(rows):
            raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
        texts = list(outputs)
    by_bench: dict[str, tuple[list, list]] = {}
    samples = []
    for i, (row, text) in enumerate(zip(rows, texts)):
        s = score_row(row, text, paper_scoring=paper_scoring)
        if finish_reasons is not None:
            s.finish_reason = finish_reasons[i] or ""
        if row.ground_truth is not None:
            s.reward = compute_reward(text or "", row.ground_truth, row.image_size, reward_cfg).as_dict()
        samples.append(s)
        group = by_bench.setdefault(row.benchmark, ([], []))
        group[0].append(row)
        group[1].append(s)
    results = {name: aggregate(name, rs, ss) for name, (rs, ss) in by_bench.items()}
    return EvalReport("paper" if paper_scoring else "standard", results, samples, dict(info or {}))


# --------------------------------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------------------------------

_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def log_mlflow(
    report: EvalReport,
    tracking_uri: str | None = None,
    *,
    run_id: str | None = None,
    experiment: str = "spatialthinker-eval",
    run_name: str | None = None,
    step: int = 0,
) -> str:
    """Log ``eval/<benchmark>/<metric>`` metrics (and the run details as params) to an MLflow run: ``run_id`` if
    given (e.g. the training run), else a new run in ``experiment``. Returns the run id."""
    import mlflow  # heavy and optional: only needed when a tracking URI or run is given

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if run_id is None:
        mlflow.set_experiment(experiment)
    metrics = {_METRIC_CHARS.sub("_", k): v for k, v in report.metrics().items()}
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as run:
        items = sorted(metrics.items())
        for i in range(0, len(items), 500):
            mlflow.log_metrics(dict(items[i : i + 500]), step=step)
        params = {f"eval.{k}": str(v)[:500] for k, v in report.info.items() if not isinstance(v, (dict, list))}
        params["eval.mode"] = report.mode
        existing = mlflow.get_run(run.info.run_id).data.params
        params = {k: v for k, v in params.items() if k not in existing}
        if params:
            mlflow.log_params(params)
        return run.info.run_id
