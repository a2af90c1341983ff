"""STVQA-7K val (``hunarbatra/STVQA-7K``, also ``OX-PIXL/STVQA-7K``; 692 rows): the training data's held-out split
(``images``, ``question_only``, ``options``, ``answer_option_text``, ``answer_only`` ...), read through the project's
reader (:mod:`datagen.stvqa`).

Ids: the project's row id is ``<image_id>-<category>`` (as :func:`datagen.stvqa.task_fields` names training rows);
predictions may also use the dataset's ``image_id`` (one question per image).

Official aggregate: accuracy, plus the mean reward terms ``reward_total``/``reward_format``/``reward_count``/
``reward_accuracy``/``reward_spatial`` of :func:`rewards.spatial.compute_reward` (total and spatial in the table).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from evaluation.answers import answer_span, extract_choice
from evaluation.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkRow,
    Ctx,
    SampleResult,
    decode_image,
    mean,
    text_of,
)


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


def map_stvqa(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """STVQA-7K val (``images``, ``question_only``, ``options``, ``answer_option_text``, ``answer_only`` ...), through
    the project's one STVQA-7K reader, :func:`datagen.stvqa.task_fields`."""
    from datagen import stvqa  # heavy (imports datasets) and only STVQA needs it: imported on first use

    try:
        fields = stvqa.task_fields(raw)
    except stvqa.DatasetError as e:
        raise ctx.fail(str(e)) from None
    return stvqa_row(fields, raw, ctx)


def read_stvqa(bench: Benchmark, src: str) -> Iterator[tuple[dict, Ctx]]:
    """Raw rows through :func:`datagen.stvqa.load_stvqa`."""
    from datagen import stvqa

    try:
        ds = stvqa.load_stvqa(src, bench.split)
    except stvqa.DatasetError as e:
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
