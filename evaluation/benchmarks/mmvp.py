"""MMVP (300 questions in 150 pairs on CLIP-blind image pairs): the official ``Questions.csv`` with
``MMVP Images/{Index}.jpg``, lmms-lab-eval's ``lmms-lab-eval/MMVP`` parquet (same columns plus ``image``), the paper's
re-package ``hunarbatra/MMVP`` (``text``, ``label``) or VLMEvalKit's TSV (``A``/``B`` columns).

Ids: the dataset's 1-based ``Index`` (VLMEvalKit: ``index``) is the project's row id; a copy without one is keyed by
the 0-based row position.

Official aggregate: ``pair_accuracy`` (a pair, ``(Index - 1) // 2``, counts when both its questions are right; the
table's headline) and ``pairs``.
"""

from __future__ import annotations

import re

from evaluation.answers import LETTERS
from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    all_correct_groups,
    canonical_letter,
    decode_images,
    is_empty,
    letter_columns,
    strip_instructions,
    text_of,
)

_INLINE_OPTION = re.compile(r"\(([a-jA-J])\)\s*(.*?)(?=\s*\([a-jA-J]\)|$)", re.DOTALL)


def map_mmvp(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MMVP: official ``Questions.csv`` + ``MMVP Images/{Index}.jpg``, lmms-lab-eval parquet (same columns + image),
    the paper's re-package (``text``, ``label``) or the VLMEvalKit TSV (A/B columns). Pairs: (Index-1)//2."""
    question = text_of(raw, ctx, "Question", "question", "text")
    options = letter_columns(raw)
    inline = text_of(raw, ctx, "Options", "options", required=False)
    if not options:
        source = inline or question
        found = _INLINE_OPTION.findall(source)
        if found and [a.upper() for a, _ in found] == list(LETTERS[: len(found)]):
            options = [t.strip() for _, t in found]
            if not inline:
                question = question[: question.find(f"({found[0][0]})")]
    question = strip_instructions(question).strip()
    raw_answer = text_of(raw, ctx, "Correct Answer", "answer", "label")
    number = text_of(raw, ctx, "Index", "index", required=False)
    if "image" in raw and not is_empty(raw["image"]):
        images = decode_images(raw["image"], ctx, "image")
    else:
        if not number:
            raise ctx.fail("no 'image' column and no 'Index' to find 'MMVP Images/{Index}.jpg'")
        for folder in ("MMVP Images", "MMVP Imgaes", "images"):  # the official script's folder name is misspelled
            if ctx.root is not None and (ctx.root / folder / f"{number}.jpg").is_file():
                images = decode_images(f"{folder}/{number}.jpg", ctx, "Index")
                break
        else:
            raise ctx.fail(f"image 'MMVP Images/{number}.jpg' not found under {ctx.root}")
    if number and ("Index" in raw or ctx.where.endswith(".csv")):
        pair = (int(float(number)) - 1) // 2  # official Index is 1-based
    else:
        pair = ctx.index // 2  # consecutive rows form a pair
    if options:
        answer, answer_type = canonical_letter(raw_answer, options, ctx, "Correct Answer"), "mcq"
    else:
        answer, answer_type = raw_answer, "open"
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=number or str(ctx.index),
        images=images,
        question=question,
        options=options or None,
        answer=answer,
        answer_type=answer_type,
        category="mmvp",
        group_keys={"pair": str(pair)},
        paper_branch="generic",
        paper_answer=raw_answer,
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """``pair_accuracy`` and the number of ``pairs``."""
    n, _, acc = all_correct_groups((r.group_keys.get("pair", r.id), s.correct) for r, s in zip(rows, results))
    return {"pair_accuracy": acc, "pairs": n}


BENCHMARKS = (
    Benchmark(
        name="mmvp",
        title="MMVP",
        hf_ids=("hunarbatra/MMVP", "lmms-lab-eval/MMVP"),
        split="train",
        mapper=map_mmvp,
        id_columns=("Index", "index"),
        official=official,
        headline="pair_accuracy",
        files=("Questions.csv", "data/train*.parquet", "train*.parquet", "*.tsv", "*.parquet"),
        dir_names=("MMVP", "mmvp"),
    ),
)
