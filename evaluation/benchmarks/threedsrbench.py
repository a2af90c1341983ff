"""3DSRBench (3D spatial reasoning, split ``test``): the paper's re-package ``hunarbatra/3DSRBench`` (``image``,
``prompt``, ``answer``, ``choices``, ``task``) or the official ``ccvl/3DSRBench`` VLMEvalKit TSVs (``question``,
``A``-``D``, letter ``answer``, subtype ``category``, and ``qid`` for the flip/circular variants). The ccvl annotation
parquet (``image_url`` only) is refused: images are not downloaded.

Ids: the dataset's ``index`` (else ``idx``, else ``qid``) is the project's row id; predictions may also use ``qid``.

Official aggregate: plain and per-group accuracy (height, location, orientation, multi_object); with the VLMEvalKit
TSV's ``qid`` also ``circular`` (every rotation of a question right), ``flip`` (a question and its flip both right)
and ``flip_circular``. The paper reports plain accuracy on its re-package, which is not comparable with those.
"""

from __future__ import annotations

import re

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    all_correct_groups,
    canonical_letter,
    decode_images,
    get,
    is_empty,
    mcq_from_columns,
    parse_list,
    row_id,
    text_of,
)

_3DSR_GROUPS = ("multi_object", "height", "location", "orientation")


def map_3dsrbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """3DSRBench: the paper's re-package (``image``, ``prompt``, ``answer``, ``choices``, ``task``) or the official
    VLMEvalKit TSV / annotation files (``question``, ``A``-``D``, letter ``answer``, subtype ``category``)."""
    stem, options, _ = mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    sub = text_of(raw, ctx, "category", "subtask", required=False)
    task = text_of(raw, ctx, "task", required=False) or next((g for g in _3DSR_GROUPS if sub.startswith(g)), sub)
    if is_empty(raw.get("image")) and not is_empty(raw.get("image_url")):
        raise ctx.fail(
            "only 'image_url' is given (the ccvl annotation parquet); use the VLMEvalKit TSV or hunarbatra/3DSRBench"
        )
    keys = {"task": task}
    qid = text_of(raw, ctx, "qid", required=False)
    if qid:
        keys["qid"] = qid
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=row_id(raw, ctx, "index", "idx", "qid"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        subcategory=sub,
        group_keys=keys,
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not is_empty(raw.get("choices")) else None,
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """``circular``, ``flip`` and ``flip_circular`` when every row has a VLMEvalKit ``qid``; else nothing."""
    if not all("qid" in r.group_keys for r in rows):
        return {}
    qids = [(r.group_keys["qid"], s.correct) for r, s in zip(rows, results)]
    return {
        "circular": all_correct_groups((re.sub(r"-\d+$", "", q), ok) for q, ok in qids)[2],
        "flip": all_correct_groups((q[:8], ok) for q, ok in qids if not re.search(r"-\d+$", q))[2],
        "flip_circular": all_correct_groups((q[:8], ok) for q, ok in qids)[2],
    }


BENCHMARKS = (
    Benchmark(
        name="3dsrbench",
        title="3DSRBench",
        hf_ids=("hunarbatra/3DSRBench", "ccvl/3DSRBench"),
        split="test",
        mapper=map_3dsrbench,
        id_columns=("index", "idx", "qid"),
        official=official,
        files=("data/test*.parquet", "test*.parquet", "*vlmevalkit.tsv", "*.tsv", "*.parquet"),
        dir_names=("3DSRBench", "3dsrbench"),
        aliases=("3dsr",),
        paper_tasks={"height": 350, "location": 875, "orientation": 525, "multi_object": 875},
        note="plain accuracy (the paper's re-package); flip/circular need the VLMEvalKit TSV's qid",
    ),
)
