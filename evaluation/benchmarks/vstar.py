"""V*Bench (191 high-resolution detail questions, split ``test``): ``craigwu/vstar_bench``'s
``test_questions.jsonl`` (``text`` with ``(A) ..`` lines, ``label``, a relative ``image`` path resolved against the
copy's root), ``lmms-lab/vstar-bench`` parquet (embedded image) or VLMEvalKit's ``VStarBench.tsv``.

Ids: the dataset's ``question_id`` (VLMEvalKit: ``index``) is the project's row id.

Official aggregate: plain and per-category accuracy.
"""

from __future__ import annotations

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    canonical_letter,
    decode_images,
    get,
    mcq_from_columns,
    row_id,
    text_of,
)


def map_vstar(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """V*Bench: ``test_questions.jsonl`` (``text`` with ``(A) ..`` lines, ``label``, relative ``image`` path),
    lmms-lab parquet (embedded image) or the VLMEvalKit TSV."""
    stem, options, _ = mcq_from_columns(raw, ctx, ("text", "question", "prompt"))
    raw_answer = text_of(raw, ctx, "label", "answer")
    category = text_of(raw, ctx, "category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "question_id", "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx, "label"),
        category=category,
    )


BENCHMARKS = (
    Benchmark(
        name="vstar",
        title="V*Bench",
        hf_ids=("lmms-lab/vstar-bench", "craigwu/vstar_bench"),
        split="test",
        mapper=map_vstar,
        id_columns=("question_id", "index", "id"),
        files=("test_questions.jsonl", "data/test*.parquet", "test*.parquet", "*.tsv"),
        dir_names=("vstar_bench", "vstar-bench", "vstar"),
        aliases=("v-star", "vstar-bench"),
    ),
)
