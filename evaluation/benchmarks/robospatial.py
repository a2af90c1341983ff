"""RoboSpatial-Home (yes/no spatial questions on home scenes): the paper's re-package ``hunarbatra/RoboSpatial-Home``
(``image``, ``depth_image``, ``prompt``, ``answer``, ``options``, ``category``; 228 rows) or the official
``chanhee-luke/RoboSpatial-Home`` splits (``compatibility``, ``configuration``; ``img``/``image``, ``question``, Yes/No
``answer``). The pointing (``context``) items are skipped; only the RGB image is used.

Ids: the dataset's ``id`` (else ``index``, else ``idx``) is the project's row id; a copy without one is keyed by
``<split>-<row>``.

Official aggregate: plain and per-category accuracy.
"""

from __future__ import annotations

from pathlib import Path

from evaluation.answers import LETTERS, letter_of
from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    decode_images,
    get,
    options_or_inline,
    row_id,
    stem_of,
    text_of,
    yes_no,
)


def map_robospatial(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """RoboSpatial-Home: the paper's re-package (``image``, ``depth_image``, ``prompt``, ``answer``, ``options``,
    ``category``) or the official splits (``img``/``image``, ``question``, Yes/No ``answer``). The pointing
    (``context``) items are skipped; only the RGB image is used."""
    category = text_of(raw, ctx, "category", required=False) or ctx.task
    if category == "context":
        return None
    text = text_of(raw, ctx, "prompt", "question")
    raw_answer = text_of(raw, ctx, "answer")
    options = options_or_inline(raw, ctx, text)
    stem = stem_of(text)
    yn = yes_no(raw_answer)
    if yn is None and options:
        letter = letter_of(raw_answer, options)
        yn = yes_no(options[LETTERS.index(letter)]) if letter else None
    if yn is None:
        raise ctx.fail(f"column 'answer' value {raw_answer[:60]!r} is not yes/no (pointing items are not supported)")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "id", "index", "idx"),
        images=decode_images(get(raw, ctx, "image", "img", "rgb"), ctx, "image"),
        question=stem,
        options=options if options and all(yes_no(o) for o in options) else ["Yes", "No"],
        answer=yn,
        answer_type="yesno",
        category=category,
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=options or None,
    )


SPLITS = ("context", "compatibility", "configuration")


def task_of_file(path: Path) -> str:
    """The official copy's files are named by split (``data/compatibility-00000-of-00001.parquet``)."""
    split = path.stem.split("-")[0]
    return split if split in SPLITS else ""


BENCHMARKS = (
    Benchmark(
        name="robospatial",
        title="RoboSpatial-Home (RGB, yes/no)",
        hf_ids=("hunarbatra/RoboSpatial-Home", "chanhee-luke/RoboSpatial-Home"),
        split="train",
        mapper=map_robospatial,
        id_columns=("id", "index", "idx"),
        files=("data/train*.parquet", "data/{compatibility,configuration}*.parquet", "*.tsv", "*.parquet"),
        dir_names=("RoboSpatial-Home", "robospatial"),
        aliases=("robospatial-home", "robospatial-rgb"),
        paper_tasks={"configuration": 123, "compatibility": 105},
        hub_splits={"chanhee-luke/RoboSpatial-Home": ("compatibility", "configuration")},
        task_of_file=task_of_file,
        note="compatibility + configuration (yes/no); pointing (context) items skipped; RGB image only",
    ),
)
