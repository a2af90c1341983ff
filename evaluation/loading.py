"""Reading a benchmark's raw rows from a Hugging Face id or a local copy in a published format.

* a hub id (``datasets.load_dataset``; needs the hub or its cache);
* a parquet / arrow / jsonl / json / csv file, or a directory of them (HF snapshot layout, e.g.
  ``Spatial_Relation/val-00000-of-00001.parquet``, ``data/image-00000-of-00001.parquet``);
* a directory written by ``datasets.save_to_disk``;
* a VLMEvalKit TSV (base64 images, ``A``..``J`` option columns, letter answers).

Images inside the rows (HF ``Image`` dicts, PIL images, bytes, base64 text, paths relative to the copy's root) are
decoded by the benchmark's mapper with :func:`evaluation.base.decode_images`; URLs are not fetched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

from evaluation.base import Benchmark, BenchmarkError, Ctx

DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".tsv", ".csv")


def _iter_parquet(path: Path) -> Iterator[dict]:
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=64):
            yield from batch.to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        if isinstance(e, BenchmarkError):
            raise
        raise BenchmarkError(f"{path}: not a readable parquet file ({e.__class__.__name__}: {e})") from None


def _iter_arrow(path: Path) -> Iterator[dict]:
    from datasets import Dataset  # heavy; only for .arrow copies

    try:
        ds = Dataset.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises many types
        raise BenchmarkError(f"{path}: not a readable arrow file ({e.__class__.__name__}: {e})") from None
    yield from ds


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path}: line {i + 1} is not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path}: line {i + 1} is not a JSON object")
            yield row


def _iter_json(path: Path) -> Iterator[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "questions", "annotations"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            if data and all(isinstance(v, list) for v in data.values()):  # column-oriented
                n = len(next(iter(data.values())))
                data = [{k: v[i] for k, v in data.items()} for i in range(n)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BenchmarkError(f"{path}: expected a JSON list of objects")
    yield from data


def _iter_table(path: Path, sep: str) -> Iterator[dict]:
    import pandas as pd  # pandas is only needed for TSV/CSV copies

    try:
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=256)
        for chunk in reader:
            yield from chunk.to_dict("records")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise BenchmarkError(f"{path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} file ({e})") from None


def read_file(path: Path) -> Iterator[dict]:
    """Raw rows of one data file, by suffix."""
    suffix = path.suffix.lower()
    readers = {
        ".parquet": _iter_parquet,
        ".arrow": _iter_arrow,
        ".jsonl": _iter_jsonl,
        ".json": _iter_json,
        ".tsv": lambda p: _iter_table(p, "\t"),
        ".csv": lambda p: _iter_table(p, ","),
    }
    if suffix not in readers:
        raise BenchmarkError(f"{path}: unsupported file type {suffix!r}; use {', '.join(DATA_SUFFIXES)}")
    return readers[suffix](path)


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        p for alt in m.group(1).split(",") for p in _expand_braces(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def _files_for(bench: Benchmark, root: Path, task: str | None) -> list[Path]:
    for pattern in bench.files:
        if "{task}" in pattern and not task:
            continue
        found: list[Path] = []
        for p in _expand_braces(pattern.replace("{task}", task or "")):
            found.extend(x for x in sorted(root.glob(p)) if x.is_file())
        if found:
            return found
    found = sorted(x for x in root.rglob("*") if x.is_file() and x.suffix.lower() in DATA_SUFFIXES)
    found = [x for x in found if not any(part.startswith(".") for part in x.relative_to(root).parts)]
    split = [x for x in found if bench.split in x.name.lower()]
    return split or found


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _iter_saved(bench: Benchmark, path: Path) -> Iterator[dict]:
    from datasets import load_from_disk  # heavy; only for save_to_disk copies

    dd = load_from_disk(str(path))
    if hasattr(dd, "keys"):
        if bench.split not in dd:
            raise BenchmarkError(f"{bench.name}: {path} has no split {bench.split!r} (has {', '.join(dd.keys())})")
        dd = dd[bench.split]
    yield from dd


def _iter_hub(bench: Benchmark, hf_id: str) -> Iterator[tuple[dict, Ctx]]:
    from datasets import load_dataset  # heavy, and only needed for hub ids

    splits = bench.hub_splits.get(hf_id, (bench.split,))
    for config in bench.hf_configs:
        for split in splits:
            where = f"{hf_id}" + (f"[{config}]" if config else "") + f":{split}"
            try:
                ds = load_dataset(hf_id, config, split=split) if config else load_dataset(hf_id, split=split)
            except Exception as e:  # noqa: BLE001 - network, auth and schema errors all end here
                raise BenchmarkError(
                    f"{bench.name}: cannot load {where} ({e.__class__.__name__}: {e})"[:400]
                ) from None
            task = config or (split if len(splits) > 1 else "")
            for i, raw in enumerate(ds):
                yield raw, Ctx(bench.name, where, i, None, task)


def iter_raw(bench: Benchmark, source: str | Path) -> Iterator[tuple[dict, Ctx]]:
    """(raw row, context) pairs of a benchmark read from a local path or a hub id."""
    path = Path(source).expanduser()
    if not path.exists():
        text = str(source)
        text = text.removeprefix("hf://")
        if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
            yield from _iter_hub(bench, text)
            return
        raise BenchmarkError(f"{bench.name}: source {source} does not exist (and is not a hub id owner/name)")
    if path.is_file():
        for i, raw in enumerate(read_file(path)):
            yield raw, Ctx(bench.name, str(path), i, path.parent, _task_of(bench, path, path.parent))
        return
    if _is_saved_dataset(path):
        for i, raw in enumerate(_iter_saved(bench, path)):
            yield raw, Ctx(bench.name, str(path), i, path, "")
        return
    tasks: Iterable[str | None] = (
        [t for t in bench.hf_configs if t] if any("{task}" in f for f in bench.files) else [None]
    )
    seen: set[Path] = set()
    any_file = False
    for task in tasks:
        for f in _files_for(bench, path, task):
            if f in seen:
                continue
            seen.add(f)
            any_file = True
            for i, raw in enumerate(read_file(f)):
                yield raw, Ctx(bench.name, str(f), i, path, task or _task_of(bench, f, path))
    if not any_file:
        raise BenchmarkError(f"{bench.name}: no data files ({', '.join(DATA_SUFFIXES)}) under {path}")


def _task_of(bench: Benchmark, f: Path, root: Path) -> str:
    """The config a file belongs to, from its directory (BLINK ``Spatial_Relation/``) or name (RoboSpatial
    ``data/compatibility-*.parquet``), else the benchmark's :attr:`Benchmark.task_of_file` (SpatialBench
    ``counting.json``)."""
    names = [p for p in f.relative_to(root).parts[:-1]] + [f.stem.split("-")[0]]
    for n in names:
        for t in bench.hf_configs:
            if t and n == t:
                return t
    return bench.task_of_file(f) if bench.task_of_file else ""


def find_local(bench: Benchmark, data_root: str | Path) -> Path | None:
    """The benchmark's local copy under ``data_root``: ``<root>/<dir name>`` for the registry's directory names,
    the hub ids' repository names and the benchmark name."""
    root = Path(data_root).expanduser()
    names = list(bench.dir_names) + [h.split("/")[-1] for h in bench.hf_ids] + [bench.name]
    for n in names:
        if (root / n).exists():
            return root / n
    return None
