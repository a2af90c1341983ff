"""CV-Bench (Cambrian's vision-centric benchmark, ``nyu-visionx/CV-Bench``, split ``test``): 2,638 questions, 2D
(Count, Relation; sources ADE20K and COCO) and 3D (Depth, Distance; source Omni3D). Registered as ``cv-bench`` (both),
``cv-bench-2d`` and ``cv-bench-3d``.

Copies: the hub parquet (``test_2d.parquet``, ``test_3d.parquet``, or an older single ``test.parquet``), the raw
``test_2d.jsonl``/``test_3d.jsonl`` with an ``img/`` tree, or VLMEvalKit's ``CV-Bench-2D``/``-3D`` TSVs.

Ids: the project's row id is ``<type>-<idx>`` (``2D-0``, ``3D-17``), because the dataset does not promise that ``idx``
is unique across the 2D and 3D files. Predictions may also use the dataset's ``idx`` (VLMEvalKit: ``index``); in
``cv-bench``, where both halves are loaded, an ``idx`` found in both is ambiguous and needs the project's id.

Official aggregate (the dataset card): per-source accuracy, then ``official = ((acc_ADE20K + acc_COCO) / 2 +
acc_Omni3D) / 2``; 2D alone is the mean of its two sources, 3D alone is Omni3D. The table shows ``official``.
"""

from __future__ import annotations

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    accuracy_by,
    canonical_letter,
    decode_images,
    get,
    is_empty,
    mcq_from_columns,
    parse_list,
    text_of,
)


def map_cv_bench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """CV-Bench (HF parquet, jsonl + img/, VLMEvalKit TSV). Keeps 2D or 3D rows for the 2d/3d benchmarks."""
    kind = text_of(raw, ctx, "type", required=False)
    want = {"cv-bench-2d": "2D", "cv-bench-3d": "3D"}.get(ctx.benchmark)
    if want and kind and kind.upper() != want:
        return None
    stem, options, _ = mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    image_col = "image" if not is_empty(raw.get("image")) else "filename"
    images = decode_images(get(raw, ctx, "image", "filename"), ctx, image_col)
    source = text_of(raw, ctx, "source", required=False)
    task = text_of(raw, ctx, "task", "category", required=False)
    idx = text_of(raw, ctx, "idx", "index", required=False) or str(ctx.index)
    kind = kind or ("3D" if source == "Omni3D" or task in ("Depth", "Distance") else "2D")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=f"{kind}-{idx}",
        images=images,
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        group_keys={"source": source, "type": kind},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not is_empty(raw.get("choices")) else options,
    )


def _source_metrics(rows: list[BenchmarkRow], results: list[SampleResult]) -> tuple[dict, float | None, float | None]:
    src = accuracy_by((r.group_keys.get("source", ""), s.correct) for r, s in zip(rows, results))
    m = {f"source/{k}": v for k, v in src.items()}
    two_d = (src["ADE20K"] + src["COCO"]) / 2 if "ADE20K" in src and "COCO" in src else None
    three_d = src.get("Omni3D")
    if two_d is not None:
        m["acc_2d"] = two_d
    if three_d is not None:
        m["acc_3d"] = three_d
    return m, two_d, three_d


def official_all(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """Per-source accuracy, ``acc_2d``, ``acc_3d`` and ``official`` (their mean)."""
    m, two_d, three_d = _source_metrics(rows, results)
    if two_d is not None and three_d is not None:
        m["official"] = (two_d + three_d) / 2
    return m


def official_2d(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """Per-source accuracy and ``official`` = ``acc_2d`` (the mean of ADE20K and COCO)."""
    m, two_d, _ = _source_metrics(rows, results)
    if two_d is not None:
        m["official"] = two_d
    return m


def official_3d(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """Per-source accuracy and ``official`` = ``acc_3d`` (Omni3D)."""
    m, _, three_d = _source_metrics(rows, results)
    if three_d is not None:
        m["official"] = three_d
    return m


_COMMON = dict(
    hf_ids=("nyu-visionx/CV-Bench",),
    split="test",
    mapper=map_cv_bench,
    id_columns=("idx", "index"),
    headline="official",
    dir_names=("CV-Bench", "cv-bench"),
)

BENCHMARKS = (
    Benchmark(
        name="cv-bench",
        title="CV-Bench (2D+3D)",
        official=official_all,
        hf_configs=("default",),
        files=("test_[23]d.parquet", "test.parquet", "data/test*.parquet", "test_[23]d.jsonl", "*.tsv"),
        aliases=("cvbench",),
        paper_tasks={"Count": 788, "Relation": 650, "Distance": 600, "Depth": 600},
        **_COMMON,
    ),
    Benchmark(
        name="cv-bench-2d",
        title="CV-Bench 2D",
        official=official_2d,
        hf_configs=("2D",),
        files=("test_2d.parquet", "test.parquet", "data/test*.parquet", "test_2d.jsonl", "*2D*.tsv", "*.tsv"),
        aliases=("cv-bench-2D",),
        paper_tasks={"Count": 788, "Relation": 650},
        **_COMMON,
    ),
    Benchmark(
        name="cv-bench-3d",
        title="CV-Bench 3D",
        official=official_3d,
        hf_configs=("3D",),
        files=("test_3d.parquet", "test.parquet", "data/test*.parquet", "test_3d.jsonl", "*3D*.tsv", "*.tsv"),
        aliases=("cv-bench-3D",),
        paper_tasks={"Distance": 600, "Depth": 600},
        **_COMMON,
    ),
)
