"""SpatialReasonerEval (1,200 CV-Bench-3D-style Depth/Distance questions): the paper's re-package
``hunarbatra/SpatialReasonerEval`` (``choices`` is a string holding a list) or ccvl's ``CV-Bench-3D.tsv``.

Ids: the dataset's ``index`` (else ``idx``, else ``id``) is the project's row id.

Official aggregate: plain and per-task accuracy (it overlaps CV-Bench 3D: same images and questions).
"""

from __future__ import annotations

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    canonical_letter,
    decode_images,
    get,
    is_empty,
    mcq_from_columns,
    parse_list,
    row_id,
    text_of,
)


def map_spatialreasoner(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """SpatialReasonerEval: the paper's re-package (``choices`` is a string holding a list) or ccvl's TSV."""
    stem, options, _ = mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    task = text_of(raw, ctx, "task", "category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "index", "idx", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        group_keys={"task": task},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not is_empty(raw.get("choices")) else None,
    )


BENCHMARKS = (
    Benchmark(
        name="spatialreasoner",
        title="SpatialReasonerEval",
        hf_ids=("hunarbatra/SpatialReasonerEval",),
        split="train",
        mapper=map_spatialreasoner,
        id_columns=("index", "idx", "id"),
        files=("data/train*.parquet", "train*.parquet", "CV-Bench-3D.tsv", "*.tsv", "*.parquet"),
        dir_names=("SpatialReasonerEval", "spatialreasoner"),
        aliases=("spatialreasonereval",),
        paper_tasks={"Depth": 600, "Distance": 600},
        note="overlaps CV-Bench 3D (same images and questions)",
    ),
)
