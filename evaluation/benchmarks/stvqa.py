"""STVQA-7K val (``hunarbatra/STVQA-7K``, also ``OX-PIXL/STVQA-7K``; 692 rows): the training data's held-out split
(``images``, ``question_only``, ``options``, ``answer_option_text``, ``answer_only`` ...), read through the project's
reader (:mod:`datagen.stvqa`) when it is importable.

Ids: the project's row id is ``<image_id>-<category>`` (as :func:`datagen.stvqa.task_fields` names training rows);
predictions may also use the dataset's ``image_id`` (one question per image).

Official aggregate: accuracy, plus the mean reward terms ``reward_total``/``reward_format``/``reward_count``/
``reward_accuracy``/``reward_spatial`` of :func:`rewards.spatial.compute_reward` (total and spatial in the table).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from evaluation.answers import LETTERS, answer_span, extract_choice
from evaluation.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkRow,
    Ctx,
    SampleResult,
    decode_image,
    decode_images,
    get,
    mean,
    parse_list,
    split_option_lines,
    text_of,
)
from evaluation.loading import iter_raw


def stvqa_task_fields(raw: dict, ctx: Ctx) -> dict:
    """The STVQA-7K columns as ``datagen.stvqa.task_fields`` returns them: id, question, options, image, image_size,
    ground_truth, category. Used when datagen.stvqa is not importable."""
    options = parse_list(get(raw, ctx, "options"), ctx, "options")
    question = text_of(raw, ctx, "question_only", required=False)
    if not question:
        question = split_option_lines(text_of(raw, ctx, "question_with_options", "question"))[0]
    images = decode_images(get(raw, ctx, "images", "image"), ctx, "images")
    if not images:
        raise ctx.fail("column 'images' is empty")
    gt = text_of(raw, ctx, "answer_option_text", required=False)
    if not gt:
        answer = text_of(raw, ctx, "answer")
        letter = extract_choice(answer, options)
        if letter is None:
            raise ctx.fail("neither 'answer_option_text' nor a letter in 'answer'")
        text = f"({letter}) {options[LETTERS.index(letter)]}"
        gt = re.sub(r"<answer>.*?</answer>", f"<answer>{text}</answer>", answer, flags=re.DOTALL)
    image_id = text_of(raw, ctx, "id", "image_id", required=False)
    return {
        "id": f"{image_id}-{ctx.index}" if image_id else str(ctx.index),
        "question": question,
        "options": options,
        "image": images[0],
        "image_size": images[0].size,
        "ground_truth": gt,
        "category": text_of(raw, ctx, "category", required=False),
    }


def stvqa_row(fields: dict, raw: dict, ctx: Ctx) -> BenchmarkRow:
    """A :class:`BenchmarkRow` from STVQA task fields; the letter is read from the ground truth's answer block."""
    options = list(fields["options"])
    letter = extract_choice(answer_span(fields["ground_truth"]), options, span=False)
    if letter is None:
        raise ctx.fail(f"ground truth answer {answer_span(fields['ground_truth'])[:60]!r} names no option")
    image = fields["image"]
    image = decode_image(image, ctx, "images") if not isinstance(image, Image.Image) else image.convert("RGB")
    paper = text_of(raw, ctx, "answer_only", required=False) or letter
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=str(fields["id"]),
        images=[image],
        question=str(fields["question"]),
        options=options,
        answer=letter,
        category=str(fields.get("category") or ""),
        image_size=tuple(int(v) for v in fields["image_size"]),
        ground_truth=str(fields["ground_truth"]),
        paper_branch="mcq",
        paper_answer=paper,
        paper_choices=options,
    )


USE_DATAGEN_STVQA = True
"""Read STVQA through the project's reader (``datagen.stvqa.load_stvqa`` / ``task_fields``) when it is importable;
False (or an import failure) uses :func:`stvqa_task_fields` on the generic file readers here."""


@functools.cache
def _datagen_stvqa_module():
    try:
        from datagen import stvqa  # heavy (imports datasets) and only STVQA needs it: imported on first use
    except ImportError:  # pragma: no cover - depends on the state of datagen
        return None
    return stvqa if hasattr(stvqa, "load_stvqa") and hasattr(stvqa, "task_fields") else None


def datagen_stvqa():
    """The ``datagen.stvqa`` module when it is to be used (see :data:`USE_DATAGEN_STVQA`), else None."""
    return _datagen_stvqa_module() if USE_DATAGEN_STVQA else None


def map_stvqa(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """STVQA-7K val (``images``, ``question_only``, ``options``, ``answer_option_text``, ``answer_only`` ...)."""
    module = datagen_stvqa()
    if module is None:
        return stvqa_row(stvqa_task_fields(raw, ctx), raw, ctx)
    try:
        fields = module.task_fields(raw)
    except module.DatasetError as e:
        raise ctx.fail(str(e)) from None
    return stvqa_row(fields, raw, ctx)


def read_stvqa(bench: Benchmark, src: str) -> Iterator[tuple[dict, Ctx]]:
    """Raw rows through ``datagen.stvqa.load_stvqa`` (see :data:`USE_DATAGEN_STVQA`), else the generic readers."""
    module = datagen_stvqa()
    if module is None:
        yield from iter_raw(bench, src)
        return
    try:
        ds = module.load_stvqa(src, bench.split)
    except module.DatasetError as e:
        raise BenchmarkError(f"{bench.name}: {e}") from None
    for i, raw in enumerate(ds):
        yield raw, Ctx(bench.name, src, i, Path(src) if Path(src).is_dir() else None, "")


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """The mean reward terms ``reward_<term>``."""
    rewards = [s.reward for s in results if s.reward is not None]
    return {
        f"reward_{key}": mean(float(rw[key]) for rw in rewards)
        for key in ("total", "format", "count", "accuracy", "spatial")
    }


BENCHMARKS = (
    Benchmark(
        name="stvqa",
        title="STVQA-7K val",
        hf_ids=("hunarbatra/STVQA-7K", "OX-PIXL/STVQA-7K"),
        split="val",
        mapper=map_stvqa,
        id_columns=("image_id",),
        official=official,
        shown=("reward_total", "reward_spatial"),
        files=("*val*.parquet", "data/val*.parquet", "*val*.jsonl", "*val*.arrow"),
        dir_names=("STVQA-7K", "stvqa"),
        aliases=("stvqa-7k",),
        raw_rows=read_stvqa,
        note="accuracy plus mean reward components (rewards.spatial.compute_reward)",
    ),
)
