"""MME-RealWorld-Lite (about 1.9K high-resolution questions): lmms-eval's
``yifanzhang114/MME-RealWorld-lite-lmms-eval`` parquet (``multi-choice options`` list ``"(A) .."``, base64 ``bytes``
image) or VLMEvalKit's TSV. ``category`` is ``Perception/<task>`` or ``Reasoning/<task>``.

Ids: the dataset's ``index`` (else ``question_id``, else ``id``) is the project's row id.

Official aggregate: ``perception`` and ``reasoning`` accuracy (shown in the table) beside per-task accuracy.
"""

from __future__ import annotations

import re

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
    letter_columns,
    mcq_from_columns,
    parse_list,
    row_id,
    stem_of,
    text_of,
)


def map_mme_realworld(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MME-RealWorld-Lite: lmms-eval parquet (``multi-choice options`` list ``"(A) .."``, base64 ``bytes``) or the
    VLMEvalKit TSV. ``category`` is ``Perception/<task>`` or ``Reasoning/<task>``."""
    if not letter_columns(raw) and not is_empty(raw.get("multi-choice options")):
        options = parse_list(raw["multi-choice options"], ctx, "multi-choice options")
        options = [re.sub(r"^\(?[A-J][\)\.:]\s*", "", o) for o in options]
        stem = stem_of(text_of(raw, ctx, "question"))
    else:
        stem, options, _ = mcq_from_columns(raw, ctx, ("question",))
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False)
    dimension, _, task = category.partition("/")
    l2 = text_of(raw, ctx, "l2-category", "l2_category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "index", "question_id", "id"),
        images=decode_images(get(raw, ctx, "bytes", "image"), ctx, "bytes"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task or category,
        subcategory=l2,
        group_keys={"dimension": dimension if task else "", "l2_category": l2},
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """Accuracy per dimension: ``perception``, ``reasoning``."""
    by_dim = accuracy_by((r.group_keys.get("dimension", ""), s.correct) for r, s in zip(rows, results))
    return {dim.lower(): v for dim, v in by_dim.items()}


BENCHMARKS = (
    Benchmark(
        name="mme-realworld-lite",
        title="MME-RealWorld-Lite",
        hf_ids=("yifanzhang114/MME-RealWorld-lite-lmms-eval",),
        split="train",
        mapper=map_mme_realworld,
        id_columns=("index", "question_id", "id"),
        official=official,
        shown=("perception", "reasoning"),
        files=("data/train*.parquet", "train*.parquet", "*lite*.tsv", "*.tsv", "*.parquet"),
        dir_names=("MME-RealWorld-lite-lmms-eval", "MME-RealWorld-Lite", "mme-realworld-lite"),
        aliases=("mme-rw-lite", "mme-realworld"),
    ),
)
