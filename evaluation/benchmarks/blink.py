"""BLINK (``BLINK-Benchmark/BLINK``, split ``val``; ``test`` has no answers): the two tasks SpatialThinker reports,
Spatial_Relation (143 rows) and Relative_Depth (124). Registered as ``blink`` (both), ``blink-spatial`` and
``blink-depth``.

Copies: the hub parquet, one config per task (``<Task>/val-00000-of-00001.parquet``), or VLMEvalKit's ``BLINK.tsv``
(a ``category`` column names the task).

Ids: the dataset's ``idx`` (``val_Spatial_Relation_1``; VLMEvalKit: ``index``) is the project's row id too.

Official aggregate: per-task accuracy and ``task_mean``, their unweighted mean (the table's headline for ``blink``).
"""

from __future__ import annotations

from collections import defaultdict

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    accuracy,
    canonical_letter,
    decode_image,
    decode_images,
    get,
    is_empty,
    mcq_from_columns,
    mean,
    parse_list,
    row_id,
    text_of,
)

BLINK_TASKS = {"blink-spatial": ("Spatial_Relation",), "blink-depth": ("Relative_Depth",)}
BLINK_TASKS["blink"] = BLINK_TASKS["blink-spatial"] + BLINK_TASKS["blink-depth"]


def map_blink(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """BLINK (HF parquet per task config, VLMEvalKit BLINK.tsv with a ``category`` column)."""
    task = text_of(raw, ctx, "sub_task", "category", required=False) or ctx.task
    task = task.replace(" ", "_")
    if task and task not in BLINK_TASKS[ctx.benchmark]:
        return None
    raw_answer = text_of(raw, ctx, "answer")
    if raw_answer.lower() == "hidden":
        raise ctx.fail("column 'answer' is 'hidden': BLINK's test split has no answers, use split val")
    stem, options, _ = mcq_from_columns(raw, ctx, ("question", "prompt"))
    if any(f"image_{k}" in raw for k in range(1, 5)):
        images = [
            decode_image(raw[f"image_{k}"], ctx, f"image_{k}")
            for k in range(1, 5)
            if not is_empty(raw.get(f"image_{k}"))
        ]
    else:
        images = decode_images(get(raw, ctx, "image"), ctx, "image")
    if not images:
        raise ctx.fail("no image in columns image_1..image_4")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "idx", "index"),
        images=images,
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task or ctx.task,
        group_keys={"task": task or ctx.task},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not is_empty(raw.get("choices")) else options,
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """``task_mean``: the unweighted mean of the per-task accuracies."""
    by_task = defaultdict(list)
    for r, s in zip(rows, results):
        by_task[r.category].append(s.correct)
    return {"task_mean": mean(accuracy(v)[2] for v in by_task.values())}


_COMMON = dict(
    hf_ids=("BLINK-Benchmark/BLINK",),
    split="val",
    mapper=map_blink,
    id_columns=("idx", "index"),
    official=official,
    files=("{task}/val-*.parquet", "{task}/val*.parquet", "*.tsv"),
    dir_names=("BLINK", "blink"),
)

BENCHMARKS = (
    Benchmark(
        name="blink",
        title="BLINK Spatial_Relation + Relative_Depth",
        hf_configs=BLINK_TASKS["blink"],
        headline="task_mean",
        **_COMMON,
    ),
    Benchmark(
        name="blink-spatial", title="BLINK Spatial_Relation", hf_configs=BLINK_TASKS["blink-spatial"], **_COMMON
    ),
    Benchmark(name="blink-depth", title="BLINK Relative_Depth", hf_configs=BLINK_TASKS["blink-depth"], **_COMMON),
)
