"""Benchmark evaluation of a policy: prompts, generation, scoring, official aggregates and the report.

* :func:`build_requests` turns :class:`cluster.benchmarks.BenchmarkRow` into :class:`actors.records.RolloutRequest`
  through the SAME :class:`rewards.prompt.PromptBuilder` as training: the question's own options as ``(A) text``
  lines and ``Image size: (W x H)`` of the first image's original size.
* :func:`run_policy` loads benchmarks, generates with a rollout engine (greedy by default) and scores.
* :func:`evaluate_rows` scores outputs (standard letter extraction, or ``paper_scoring=True`` for the public
  SpatialThinker script's scoring, defects included; see :mod:`rewards.choices`) and computes, per benchmark:
  accuracy with its standard error, per-task accuracy, extraction failures and the official aggregates:

  - CV-Bench: per-source accuracy and ``official = ((acc_ADE20K + acc_COCO) / 2 + acc_Omni3D) / 2`` (2D alone:
    the mean of its two sources; 3D alone: Omni3D), beside the plain accuracy;
  - BLINK: per-task accuracy and ``task_mean`` (unweighted mean over tasks);
  - MMVP: ``pair_accuracy`` (a pair counts when both its questions are right);
  - HallusionBench: ``aAcc`` (all questions), ``fAcc`` (figure accuracy: every question on one
    ``category_subcategory_set_figure`` right; VS items with figure 0 skipped) and ``qAcc`` (question-pair
    accuracy: one ``category_subcategory_set_question`` right on all its figures);
  - MME-RealWorld-Lite: ``perception`` and ``reasoning`` accuracy;
  - MM-Star: per category, per l2 category and ``l2_macro`` (unweighted mean of the l2 accuracies);
  - 3DSRBench with VLMEvalKit ``qid``: ``circular``, ``flip`` and ``flip_circular`` accuracy;
  - STVQA: mean reward terms ``reward_total``/``reward_format``/``reward_count``/``reward_accuracy``/
    ``reward_spatial`` from :func:`rewards.spatial.compute_reward`;
  - paper mode: per-task accuracy over the script's hard-coded denominators (``paper_task/<task>``).

The :class:`EvalReport` prints as a table (:meth:`EvalReport.table`), writes JSON (:meth:`EvalReport.write`, with
the per-sample records in a ``.samples.jsonl`` beside it) and logs MLflow metrics ``eval/<benchmark>/<metric>``
(:func:`log_mlflow`).
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from actors.records import RolloutRequest, TaskSample
from actors.settings import RolloutSettings, resolve_dtype
from cluster.benchmarks import BENCHMARKS, BenchmarkRow, iter_benchmark, resolve_name, resolve_source
from rewards.choices import LETTERS, PAPER_FAILED, answer_span, extract_choice, match_open, paper_score, yes_no_answer
from rewards.prompt import PromptBuilder, PromptSettings
from rewards.spatial import RewardConfig, compute_reward

log = logging.getLogger(__name__)

OPEN_ANSWER_HINT = "Answer with a single word or number."
"""Appended to the question of an open-answer row (no options)."""
OPEN_OPTIONS_TEXT = "(none: write the answer itself in the answer block)"
"""Stands in the template's options slot for an open-answer row."""


# --------------------------------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------------------------------


def prompt_messages(row: BenchmarkRow, builder: PromptBuilder) -> list[dict]:
    """The chat messages of a row, from the training prompt builder.

    Rows with options use ``builder.messages(question, options, image_size)`` unchanged. Open-answer rows (no
    options; the builder requires some) fill the builder's own template with :data:`OPEN_OPTIONS_TEXT` in the
    options slot and :data:`OPEN_ANSWER_HINT` after the question. A row with k > 1 images gets k image entries,
    all before the text, as the builder places its one image."""
    size = row.image_size
    if row.options:
        messages = builder.messages(row.question, list(row.options), size)
    else:
        text = builder.template.format(
            width=int(size[0]),
            height=int(size[1]),
            question=f"{row.question.strip()}\n{OPEN_ANSWER_HINT}",
            options=OPEN_OPTIONS_TEXT,
        )
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    if len(row.images) > 1:
        content = messages[0]["content"]
        messages[0]["content"] = [{"type": "image"} for _ in range(len(row.images) - 1)] + content
    return messages


def reference_answer(row: BenchmarkRow) -> str:
    """The answer written the way the prompt asks for it (``(B) text``, or the open answer)."""
    if row.ground_truth:
        return answer_span(row.ground_truth)
    if row.options and row.answer_type == "mcq":
        return f"({row.answer}) {row.options[LETTERS.index(row.answer)]}"
    if row.options and row.answer_type == "yesno":
        for i, text in enumerate(row.options):
            if text.strip().lower() == row.answer.lower():
                return f"({LETTERS[i]}) {text}"
    return row.answer


def build_requests(
    rows: Sequence[BenchmarkRow], prompt_builder: PromptBuilder, *, start: int = 0
) -> list[RolloutRequest]:
    """One :class:`RolloutRequest` per row: messages from :func:`prompt_messages`, images scaled by the builder,
    and a :class:`TaskSample` with the row's image size (the first image's original size). ``uid`` is
    ``eval-<benchmark>-<id>``; ``index`` counts from ``start``."""
    requests = []
    for i, row in enumerate(rows):
        if not row.images:
            raise ValueError(f"{row.benchmark} row {row.id}: no image to build a prompt from")
        sample = TaskSample(
            id=f"{row.benchmark}/{row.id}",
            ground_truth=row.ground_truth or reference_answer(row),
            image_size=tuple(row.image_size),
            category=row.category,
        )
        requests.append(
            RolloutRequest(
                uid=f"eval-{row.benchmark}-{row.id}",
                index=start + i,
                messages=prompt_messages(row, prompt_builder),
                images=[prompt_builder.image(im) for im in row.images],
                sample=sample,
            )
        )
    return requests


# --------------------------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """One scored response."""

    benchmark: str
    id: str
    category: str
    answer: str
    """The row's canonical answer (letter, Yes/No or string)."""
    prediction: str | None
    """The extracted prediction; None when nothing could be extracted (scored wrong)."""
    correct: bool
    scoring: str
    """``standard`` or ``paper``."""
    output: str = ""
    finish_reason: str = ""
    reward: dict | None = None
    """STVQA: the reward terms of :func:`rewards.spatial.compute_reward`."""


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


def _acc(flags: Iterable[bool]) -> tuple[int, int, float]:
    flags = list(flags)
    n = len(flags)
    c = sum(1 for f in flags if f)
    return n, c, (c / n if n else float("nan"))


def _all_correct_groups(items: Iterable[tuple[str, bool]]) -> tuple[int, int, float]:
    """(groups, groups all correct, fraction) over (key, correct) pairs."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, ok in items:
        groups[key].append(ok)
    return _acc(all(v) for v in groups.values())


def _mean(values: Iterable[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _official_metrics(name: str, rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """The benchmark's official aggregates (module docstring)."""
    pairs = list(zip(rows, results))
    m: dict[str, float] = {}
    if name.startswith("cv-bench"):
        by_source = defaultdict(list)
        for r, s in pairs:
            by_source[r.group_keys.get("source", "")].append(s.correct)
        src = {k: _acc(v)[2] for k, v in by_source.items() if k}
        for k, v in src.items():
            m[f"source/{k}"] = v
        two_d = (src["ADE20K"] + src["COCO"]) / 2 if "ADE20K" in src and "COCO" in src else None
        three_d = src.get("Omni3D")
        if two_d is not None:
            m["acc_2d"] = two_d
        if three_d is not None:
            m["acc_3d"] = three_d
        if name == "cv-bench" and two_d is not None and three_d is not None:
            m["official"] = (two_d + three_d) / 2
        elif name == "cv-bench-2d" and two_d is not None:
            m["official"] = two_d
        elif name == "cv-bench-3d" and three_d is not None:
            m["official"] = three_d
    elif name.startswith("blink"):
        by_task = defaultdict(list)
        for r, s in pairs:
            by_task[r.category].append(s.correct)
        m["task_mean"] = _mean(_acc(v)[2] for v in by_task.values())
    elif name == "mmvp":
        n, _, acc = _all_correct_groups((r.group_keys.get("pair", r.id), s.correct) for r, s in pairs)
        m["pair_accuracy"] = acc
        m["pairs"] = n
    elif name == "hallusionbench":
        m["aAcc"] = _acc(s.correct for s in results)[2]
        figure = []
        question = []
        for r, s in pairs:
            k = r.group_keys
            base = f"{k.get('category')}_{k.get('subcategory')}_{k.get('set_id')}"
            if not (k.get("category") == "VS" and str(k.get("figure_id")) == "0"):
                figure.append((f"{base}_{k.get('figure_id')}", s.correct))
            question.append((f"{base}_{k.get('question_id')}", s.correct))
        m["fAcc"] = _all_correct_groups(figure)[2]
        m["qAcc"] = _all_correct_groups(question)[2]
    elif name == "mme-realworld-lite":
        by_dim = defaultdict(list)
        for r, s in pairs:
            by_dim[r.group_keys.get("dimension", "")].append(s.correct)
        for dim, flags in by_dim.items():
            if dim:
                m[dim.lower()] = _acc(flags)[2]
    elif name == "mmstar":
        by_l2 = defaultdict(list)
        for r, s in pairs:
            by_l2[r.subcategory].append(s.correct)
        l2 = {k: _acc(v)[2] for k, v in by_l2.items() if k}
        for k, v in l2.items():
            m[f"l2/{k}"] = v
        if l2:
            m["l2_macro"] = _mean(l2.values())
    elif name == "3dsrbench" and all("qid" in r.group_keys for r in rows):
        qids = [(r.group_keys["qid"], s.correct) for r, s in pairs]
        m["circular"] = _all_correct_groups((re.sub(r"-\d+$", "", q), ok) for q, ok in qids)[2]
        m["flip"] = _all_correct_groups((q[:8], ok) for q, ok in qids if not re.search(r"-\d+$", q))[2]
        m["flip_circular"] = _all_correct_groups((q[:8], ok) for q, ok in qids)[2]
    if name == "stvqa":
        rewards = [s.reward for s in results if s.reward is not None]
        for key in ("total", "format", "count", "accuracy", "spatial"):
            m[f"reward_{key}"] = _mean(float(rw[key]) for rw in rewards)
    return m


HEADLINE = {
    "cv-bench": "official",
    "cv-bench-2d": "official",
    "cv-bench-3d": "official",
    "blink": "task_mean",
    "mmvp": "pair_accuracy",
    "hallusionbench": "qAcc",
}
"""The official metric shown beside plain accuracy in the table (the others are in the JSON and MLflow)."""


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
    n, c, acc = _acc(s.correct for s in results)
    stderr = math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    by_task = defaultdict(list)
    for r, s in zip(rows, results):
        by_task[r.category or "all"].append(s.correct)
    tasks = {}
    for task in sorted(by_task):
        tn, tc, ta = _acc(by_task[task])
        tasks[task] = {"n": tn, "correct": tc, "accuracy": ta}
    metrics = _official_metrics(name, rows, results)
    modes = sorted({s.scoring for s in results})
    scoring = "+".join(modes) if modes else "standard"
    if "paper" in modes:
        table = BENCHMARKS[name].paper_tasks if name in BENCHMARKS else None
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
            key = HEADLINE.get(name)
            extra = [f"{key}={100 * r.metrics[key]:.2f}"] if key and key in r.metrics else []
            for k in ("aAcc", "fAcc", "perception", "reasoning", "l2_macro", "reward_total", "reward_spatial"):
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


# --------------------------------------------------------------------------------------------------------------------
# running a policy
# --------------------------------------------------------------------------------------------------------------------


def _make_engine(model_path: str, settings: RolloutSettings, dtype: str, seed: int):
    """The project's rollout engine (vLLM, or transformers ``generate`` with ``settings.engine == "hf"``)."""
    # torch/ray/transformers (and vLLM) are heavy; scoring precomputed predictions must not need them
    from actors.common import setup_process
    from actors.rollout import make_engine

    device = setup_process(settings.device, settings.torch_threads)
    kwargs = {"seed": seed}
    if "device" in inspect.signature(make_engine).parameters:
        kwargs["device"] = device
    return make_engine(model_path, settings, resolve_dtype(dtype, device), **kwargs)


def run_policy(
    model_path: str,
    benchmarks: Sequence[str] | Mapping[str, Iterable[BenchmarkRow]],
    engine_settings: RolloutSettings | None = None,
    *,
    prompt_settings: PromptSettings | None = None,
    dtype: str = "auto",
    seed: int = 0,
    temperature: float = 0.0,
    max_new_tokens: int | None = None,
    paper_scoring: bool = False,
    sources: Mapping[str, str] | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    engine=None,
    reward_cfg: RewardConfig | None = None,
) -> EvalReport:
    """Generate one response per row with a rollout engine and score it.

    ``benchmarks``: names (loaded with :func:`cluster.benchmarks.iter_benchmark` from ``sources[name]`` or
    ``data_root``, at most ``limit`` rows each) or a mapping name -> rows. ``engine``: an object with
    ``generate(requests, n, *, temperature=None, max_new_tokens=None) -> list[PromptGroup]``; None builds one with
    ``actors.rollout.make_engine(model_path, engine_settings, dtype, seed)``. Greedy (temperature 0) by default.
    Rows are generated ``batch_size`` at a time; their images are released once their prompts are built.
    """
    engine_settings = engine_settings or RolloutSettings()
    builder = PromptBuilder(prompt_settings)
    sources = {resolve_name(k): v for k, v in (sources or {}).items()}
    if isinstance(benchmarks, Mapping):
        plan = [(resolve_name(k), v) for k, v in benchmarks.items()]
    else:
        plan = [
            (
                resolve_name(b),
                iter_benchmark(b, sources.get(resolve_name(b)), data_root=data_root, limit=limit),
            )
            for b in benchmarks
        ]
    if engine is None:
        engine = _make_engine(model_path, engine_settings, dtype, seed)
    all_rows: list[BenchmarkRow] = []
    outputs: list[str] = []
    reasons: list[str] = []
    t0 = time.time()
    for name, rows in plan:
        n_before = len(all_rows)
        batch: list[BenchmarkRow] = []
        for row in itertools.chain(rows, [None]):
            if row is not None:
                batch.append(row)
            if batch and (row is None or len(batch) >= batch_size):
                requests = build_requests(batch, builder, start=len(all_rows))
                for r in batch:
                    r.images = []  # the scaled copies live in the requests; keep memory flat
                groups = engine.generate(requests, 1, temperature=temperature, max_new_tokens=max_new_tokens)
                if len(groups) != len(batch):
                    raise RuntimeError(f"engine returned {len(groups)} groups for {len(batch)} requests")
                by_uid = {g.uid: g for g in groups}
                for req, r in zip(requests, batch):
                    resp = by_uid[req.uid].responses[0]
                    outputs.append(resp.text)
                    reasons.append(resp.finish_reason)
                    all_rows.append(r)
                log.info("%s: %d rows generated (%.0fs)", name, len(all_rows) - n_before, time.time() - t0)
                batch = []
    info = {
        "model": str(model_path),
        "engine": getattr(engine, "name", type(engine).__name__),
        "temperature": temperature,
        "max_new_tokens": max_new_tokens if max_new_tokens is not None else engine_settings.max_new_tokens,
        "dtype": dtype,
        "seed": seed,
        "limit": limit,
        "sources": {name: resolve_source(name, sources.get(name), data_root) for name, _ in plan},
        "seconds": round(time.time() - t0, 1),
    }
    return evaluate_rows(
        all_rows, outputs, paper_scoring=paper_scoring, reward_cfg=reward_cfg, finish_reasons=reasons, info=info
    )
