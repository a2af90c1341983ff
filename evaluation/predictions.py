"""Scoring outputs written elsewhere: a ``--predictions`` JSONL file, one ``{"id", "output"[, "benchmark"]}`` per line,
matched to the loaded benchmark rows.

An ``id`` may be the project's row id (what ``scripts/evaluate.py --out`` writes in its ``.samples.jsonl``) or the
dataset's own id, as another harness (VLMEvalKit, lmms-eval, the public SpatialThinker script) keys its outputs:
each benchmark module's docstring names its id columns (:attr:`evaluation.base.Benchmark.id_columns`, e.g.
CV-Bench ``idx``, MMVP ``Index``, BLINK/MM-Star ``index``, HallusionBench's VLMEvalKit ``index``, STVQA
``image_id``). The project's id is tried first. Without a ``benchmark`` field an id must name exactly one loaded row.
Ids that match no row are collected and reported together (:func:`unmatched_message`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.base import BenchmarkRow
from evaluation.registry import BENCHMARKS, resolve_name


class PredictionError(ValueError):
    """A predictions file or line that cannot be used; the message is one line naming the file and line."""


@dataclass
class Prediction:
    """One line of a predictions file."""

    line: int
    """1-based line number in the file."""
    id: str
    output: str
    benchmark: str | None = None
    """Registry name of the line's ``benchmark`` field, None when it has none."""


def read_predictions(path: str | Path) -> list[Prediction]:
    """The lines of a predictions file (``{"id", "output"[, "benchmark"]}``, blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise PredictionError(f"--predictions {path} does not exist")
    preds = []
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise PredictionError(f"{path} line {i}: not JSON ({e.msg})") from None
            if not isinstance(d, dict) or "id" not in d or "output" not in d:
                raise PredictionError(f"{path} line {i}: needs fields 'id' and 'output'")
            if d["output"] is not None and not isinstance(d["output"], str):
                raise PredictionError(f"{path} line {i}: 'output' must be a string")
            bench = d.get("benchmark")
            preds.append(Prediction(i, _id_text(d["id"]), d["output"] or "", resolve_name(bench) if bench else None))
    if not preds:
        raise PredictionError(f"{path} holds no predictions")
    return preds


def _id_text(value) -> str:
    """An id as text; a whole float (``3.0``, as pandas writes integer columns with gaps) as an integer."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class Matched:
    """Predictions matched to rows."""

    outputs: dict[tuple[str, str], str] = field(default_factory=dict)
    """Row key ``(benchmark, id)`` -> output."""
    by_native_id: int = 0
    """How many predictions matched through a dataset id rather than the project's."""
    unmatched: list[Prediction] = field(default_factory=list)
    """Predictions whose id names no loaded row."""


def match_predictions(
    preds: Iterable[Prediction], rows: Iterable[BenchmarkRow], where: str = "predictions"
) -> Matched:
    """Match each prediction to one row: by ``(benchmark, id)`` when the line names its benchmark, else by id across
    the loaded benchmarks; the project's id first, then the dataset's ids. An id that names several rows, and a second
    prediction for one row, raise :class:`PredictionError`; ids that name no row are collected in ``unmatched``."""
    keys: set[tuple[str, str]] = set()
    project_any: dict[str, list[tuple[str, str]]] = defaultdict(list)
    native: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    native_any: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        keys.add(row.key)
        project_any[row.id].append(row.key)
        for nid in row.native_ids:
            native[(row.benchmark, nid)].append(row.key)
            native_any[nid].append(row.key)
    result = Matched()
    for p in preds:
        through_native = False
        if p.benchmark:
            found = [(p.benchmark, p.id)] if (p.benchmark, p.id) in keys else []
            if not found:
                found, through_native = native.get((p.benchmark, p.id), []), True
        else:
            found = project_any.get(p.id, [])
            if not found:
                found, through_native = native_any.get(p.id, []), True
        if not found:
            result.unmatched.append(p)
            continue
        if len(found) > 1:
            names = ", ".join(f"{b}/{i}" for b, i in found[:4])
            what = "dataset id" if through_native else "id"
            raise PredictionError(
                f"{where} line {p.line}: {what} {p.id!r} names {len(found)} rows ({names}); use the project's row id"
                + ("" if p.benchmark else " or add a 'benchmark' field")
            )
        key = found[0]
        if key in result.outputs:
            raise PredictionError(f"{where} line {p.line}: a second prediction for {key[0]}/{key[1]}")
        result.outputs[key] = p.output
        result.by_native_id += through_native
    return result


def id_forms(benchmark: str, example: str | None = None) -> str:
    """What ids a benchmark's rows answer to, for messages: ``"the project's id (e.g. '2D-0') or the dataset's
    idx/index"``."""
    columns = BENCHMARKS[benchmark].id_columns
    project = f"the project's id (e.g. {example!r})" if example else "the project's id"
    return f"{project} or the dataset's {'/'.join(columns)}" if columns else project


def unmatched_message(
    unmatched: list[Prediction], total: int, rows: Iterable[BenchmarkRow], where: str = "predictions", show: int = 8
) -> str:
    """One line saying which prediction ids matched no loaded row, and what ids each loaded benchmark accepts."""
    examples: dict[str, str] = {}
    for row in rows:
        examples.setdefault(row.benchmark, row.id)
    listed = "; ".join(
        f"line {p.line} id {p.id!r}" + (f" ({p.benchmark})" if p.benchmark else "") for p in unmatched[:show]
    )
    more = f" and {len(unmatched) - show} more" if len(unmatched) > show else ""
    accepted = "; ".join(f"{name}: {id_forms(name, ex)}" for name, ex in examples.items())
    return (
        f"{where}: {len(unmatched)} of {total} prediction ids match no loaded row: {listed}{more}. "
        f"Ids accepted: {accepted}"
    )
