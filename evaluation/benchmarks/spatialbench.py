"""SpatialBench (SpatialBot's 174 questions on existence, reach, size, position and counting): the paper's
re-package ``hunarbatra/SpatialBench`` (``text``, ``answer``, ``category``, ``question_id``) or the official
per-category json files (``counting.json`` ...; ``image`` a path or [rgb, depth] paths). Yes/no answers become
``yesno`` rows, numbers and words stay ``open``; only the RGB image is used.

Ids: the dataset's ``question_id`` (else ``id``, else ``idx``) is the project's row id.

Official aggregate: plain per-category accuracy (not SpatialBot's pair and count-error scores).
"""

from __future__ import annotations

from pathlib import Path

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    decode_images,
    get,
    row_id,
    strip_instructions,
    text_of,
    yes_no,
)


def map_spatialbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """SpatialBench: the paper's re-package (``text``, ``answer``, ``category``, ``question_id``) or the official
    per-category json files (``image`` path or [rgb, depth] paths, ``question``, ``answer``). Yes/no answers become
    ``yesno`` rows; numbers and words stay ``open``. Only the RGB image is used."""
    question = strip_instructions(text_of(raw, ctx, "text", "question"))
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False) or ctx.task
    value = get(raw, ctx, "image")
    if isinstance(value, (list, tuple)) and value:
        value = value[0]  # [rgb, depth]: the RGB image
    yn = yes_no(raw_answer)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "question_id", "id", "idx"),
        images=decode_images(value, ctx, "image"),
        question=question,
        options=["Yes", "No"] if yn else None,
        answer=yn or raw_answer,
        answer_type="yesno" if yn else "open",
        category=category,
        group_keys={"category": category},
        paper_branch="strip",
        paper_answer=raw_answer,
    )


def task_of_file(path: Path) -> str:
    """The official json copies hold one category per file (``counting.json``)."""
    return path.stem if path.suffix == ".json" else ""


BENCHMARKS = (
    Benchmark(
        name="spatialbench",
        title="SpatialBench",
        hf_ids=("hunarbatra/SpatialBench",),
        split="train",
        mapper=map_spatialbench,
        id_columns=("question_id", "id", "idx"),
        files=("data/train*.parquet", "train*.parquet", "*.parquet", "*.json"),
        dir_names=("SpatialBench", "spatialbench"),
        paper_tasks={"existence": 40, "reach": 40, "size": 40, "positional": 34, "counting": 20},
        task_of_file=task_of_file,
        note="plain per-category accuracy (not SpatialBot's pair/count-error scores)",
    ),
)
