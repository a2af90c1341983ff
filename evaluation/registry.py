"""The benchmark registry: every benchmark module's entries by name, name resolution, and row loading.

Adding a benchmark is one new file, ``evaluation/benchmarks/<name>.py`` (a mapper, an optional official aggregate,
and ``BENCHMARKS = (Benchmark(...),)``; see any module there), and one line in :data:`MODULES`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

from evaluation.base import Benchmark, BenchmarkError, BenchmarkRow, text_of
from evaluation.loading import find_local, iter_raw

log = logging.getLogger(__name__)

MODULES = (
    "stvqa",
    "cv_bench",
    "blink",
    "threedsrbench",
    "mmvp",
    "spatialreasoner",
    "spatialbench",
    "mmstar",
    "vstar",
    "realworldqa",
    "mme_realworld",
    "robospatial",
    "hallusionbench",
)
"""The benchmark modules under ``evaluation/benchmarks/``, in the order the benchmarks are listed."""


def _collect() -> dict[str, Benchmark]:
    found: dict[str, Benchmark] = {}
    for module_name in MODULES:
        module = importlib.import_module(f"evaluation.benchmarks.{module_name}")
        for bench in module.BENCHMARKS:
            if bench.name in found:
                raise RuntimeError(
                    f"benchmark {bench.name!r} is registered twice (evaluation/benchmarks/{module_name})"
                )
            found[bench.name] = bench
    return found


BENCHMARKS: dict[str, Benchmark] = _collect()
"""Benchmark name -> registry entry."""

ALIASES: dict[str, str] = {alias: b.name for b in BENCHMARKS.values() for alias in b.aliases}
"""Other spellings accepted (the public script's names among them)."""


def resolve_name(name: str) -> str:
    """The registry name of a benchmark name or alias (case, ``_`` and ``-`` ignored)."""
    key = name.strip().lower().replace("_", "-")
    if key in BENCHMARKS:
        return key
    for alias, target in ALIASES.items():
        if alias.lower().replace("_", "-") == key:
            return target
    raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def resolve_source(name: str, source: str | Path | None = None, data_root: str | Path | None = None) -> str:
    """Where a benchmark is read from: an explicit source, else its copy under ``data_root``, else its default
    hub id."""
    bench = BENCHMARKS[resolve_name(name)]
    if source:
        return str(source)
    if data_root:
        local = find_local(bench, data_root)
        if local is None:
            tried = ", ".join(list(bench.dir_names) + [bench.name])
            raise BenchmarkError(f"{bench.name}: no local copy under {data_root} (looked for {tried})")
        return str(local)
    return bench.hf_ids[0]


def iter_benchmark(
    name: str, source: str | Path | None = None, *, data_root: str | Path | None = None, limit: int | None = None
) -> Iterator[BenchmarkRow]:
    """Normalised rows of a benchmark (see :func:`resolve_source` for where they come from); at most ``limit``.
    A duplicate id gets ``#<row position>`` appended; each row's :attr:`BenchmarkRow.native_ids` are filled from the
    benchmark's :attr:`Benchmark.id_columns`."""
    bench = BENCHMARKS[resolve_name(name)]
    src = resolve_source(bench.name, source, data_root)
    raw_rows = bench.raw_rows(bench, src) if bench.raw_rows else iter_raw(bench, src)
    n = 0
    ids: set[str] = set()
    for raw, ctx in raw_rows:
        if limit is not None and n >= limit:
            return
        row = bench.mapper(raw, ctx)
        if row is None:
            continue
        if row.id in ids:
            row.id = f"{row.id}#{ctx.index}"
        ids.add(row.id)
        natives = (text_of(raw, ctx, column, required=False) for column in bench.id_columns)
        row.native_ids = tuple(dict.fromkeys(v for v in natives if v and v != row.id))
        n += 1
        yield row
    if n == 0:
        raise BenchmarkError(f"{bench.name}: {src} holds no rows for this benchmark")


def load_benchmark(
    name: str, source: str | Path | None = None, *, data_root: str | Path | None = None, limit: int | None = None
) -> list[BenchmarkRow]:
    """All rows of :func:`iter_benchmark` as a list."""
    rows = list(iter_benchmark(name, source, data_root=data_root, limit=limit))
    log.info("loaded %s: %d rows from %s", resolve_name(name), len(rows), resolve_source(name, source, data_root))
    return rows
