"""MM-Star (``Lin-Chen/MMStar``, config and split ``val``: 1,500 questions, 6 categories x 250, 18 l2 categories): the
hub parquet (options inside ``question`` after ``Options:``) or VLMEvalKit's ``MMStar.tsv`` (``A``-``D`` columns).

Ids: the dataset's ``index`` (else ``id``) is the project's row id.

Official aggregate: accuracy per category and per l2 category (``l2/<name>``) and ``l2_macro``, the unweighted mean
of the l2 accuracies (shown in the table).
"""

from __future__ import annotations

import re

from evaluation.answers import LETTERS
from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    accuracy_by,
    canonical_letter,
    decode_images,
    get,
    letter_columns,
    mean,
    row_id,
    split_option_lines,
    strip_instructions,
    text_of,
)

_MMSTAR_MARKER = re.compile(r"(?:^|[\s,])([A-J]):\s")


def split_mmstar_options(text: str) -> tuple[str, list[str]]:
    """``"...?\\nOptions: A: x, B: y"`` -> (stem, [x, y]); split on the ``A:``/``B:`` markers (options may contain
    commas)."""
    head, sep, tail = text.rpartition("Options:")
    if not sep:
        return split_option_lines(text)
    marks = []
    expected = 0
    for m in _MMSTAR_MARKER.finditer(" " + tail):
        if expected < len(LETTERS) and m.group(1) == LETTERS[expected]:
            marks.append(m)
            expected += 1
    if not marks:
        return text.strip(), []
    padded = " " + tail
    options = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(padded)
        options.append(padded[m.end() : end].strip().rstrip(",").strip())
    return head.strip(), options


def map_mmstar(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MM-Star: HF parquet (options inside ``question`` after ``Options:``) or the VLMEvalKit TSV (A-D columns)."""
    text = text_of(raw, ctx, "question")
    options = letter_columns(raw)
    stem, inline = split_mmstar_options(text)
    if not options:
        options = inline
    if not options:
        raise ctx.fail("column 'question' has no 'Options: A: ..., B: ...' and there are no A/B columns")
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False)
    l2 = text_of(raw, ctx, "l2_category", "l2-category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=strip_instructions(stem),
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=category,
        subcategory=l2,
        group_keys={"l2_category": l2},
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """``l2/<category>`` accuracies and ``l2_macro``."""
    l2 = accuracy_by((r.subcategory, s.correct) for r, s in zip(rows, results))
    m = {f"l2/{k}": v for k, v in l2.items()}
    if l2:
        m["l2_macro"] = mean(l2.values())
    return m


BENCHMARKS = (
    Benchmark(
        name="mmstar",
        title="MM-Star",
        hf_ids=("Lin-Chen/MMStar",),
        split="val",
        mapper=map_mmstar,
        id_columns=("index", "id"),
        official=official,
        shown=("l2_macro",),
        hf_configs=("val",),
        files=("mmstar.parquet", "*.parquet", "MMStar.tsv", "*.tsv"),
        dir_names=("MMStar", "mmstar"),
        aliases=("mm-star",),
    ),
)
