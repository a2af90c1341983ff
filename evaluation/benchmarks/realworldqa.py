"""RealWorldQA (765 driving and street-scene questions, split ``test``): ``visheratin/realworldqa`` (the paper's),
``xai-org/RealworldQA`` or ``lmms-lab/RealWorldQA``, or VLMEvalKit's TSV. Options are ``A. ..`` lines inside
``question`` (letter answers); the other items are open-form (a word or number).

Ids: the dataset's ``index`` (else ``id``) is the project's row id; a copy without one is keyed by row position.

Official aggregate: plain accuracy (exact match for the open items), per answer type.
"""

from __future__ import annotations

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    canonical_letter,
    decode_images,
    get,
    letter_columns,
    row_id,
    split_option_lines,
    strip_instructions,
    text_of,
)


def map_realworldqa(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """RealWorldQA: options are ``A. ..`` lines inside ``question`` (letter answers); other items are open-form."""
    text = text_of(raw, ctx, "question")
    raw_answer = text_of(raw, ctx, "answer")
    options = letter_columns(raw)
    stem, inline = split_option_lines(strip_instructions(text))
    options = options or inline
    if options:
        answer, answer_type = canonical_letter(raw_answer, options, ctx), "mcq"
    else:
        answer, answer_type = raw_answer, "open"
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=strip_instructions(stem),
        options=options or None,
        answer=answer,
        answer_type=answer_type,
        category=answer_type,
        paper_branch="strip",
        paper_answer=raw_answer,
    )


BENCHMARKS = (
    Benchmark(
        name="realworldqa",
        title="RealWorldQA",
        hf_ids=("visheratin/realworldqa", "xai-org/RealworldQA", "lmms-lab/RealWorldQA"),
        split="test",
        mapper=map_realworldqa,
        id_columns=("index", "id"),
        files=("data/test*.parquet", "test*.parquet", "*.tsv", "*.parquet"),
        dir_names=("realworldqa", "RealworldQA", "RealWorldQA"),
        aliases=("realworld-qa", "rwqa"),
    ),
)
