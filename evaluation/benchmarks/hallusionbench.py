"""HallusionBench (``lmms-lab/HallusionBench``, also ``lmms-lab-encoder/HallusionBench``; split ``image``: 951
yes/no questions; the 178 ``non_image`` questions are skipped): the hub parquet (``gt_answer`` "1"/"0" and the id
columns ``category``, ``subcategory``, ``set_id``, ``figure_id``, ``question_id``) or VLMEvalKit's
``HallusionBench.tsv`` (Yes/No ``answer``; the ids are the ``_``-separated fields of ``index``).

Ids: the project's row id joins the id fields, ``<category>_<subcategory>_<set_id>_<figure_id>_<question_id>``
(``VD_illusion_0_0_0``); predictions may also use VLMEvalKit's ``index``.

Official aggregate (the HallusionBench paper): ``aAcc`` (all questions), ``fAcc`` (figure accuracy: every question
on one ``category_subcategory_set_figure`` right; VS items with figure 0 skipped) and ``qAcc`` (question-pair
accuracy: one ``category_subcategory_set_question`` right on all its figures; the table's headline).
"""

from __future__ import annotations

from evaluation.base import (
    Benchmark,
    BenchmarkRow,
    Ctx,
    SampleResult,
    accuracy,
    all_correct_groups,
    decode_images,
    is_empty,
    strip_instructions,
    text_of,
    yes_no,
)


def map_hallusionbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """HallusionBench: HF parquet (``gt_answer`` "1"/"0" and all id columns) or the VLMEvalKit TSV (Yes/No
    ``answer``; set/figure/question ids are the last three ``_`` fields of ``index``). Rows without an image
    (the ``non_image`` split) are skipped."""
    value = raw.get("image")
    if is_empty(value):
        return None
    if "gt_answer" in raw:
        gt = text_of(raw, ctx, "gt_answer").replace(".", "")
        answer = "Yes" if gt == "1" else "No" if gt == "0" else None
        if answer is None:
            raise ctx.fail(f"column 'gt_answer' must be '1' or '0', got {gt!r}")
        keys = {
            "category": text_of(raw, ctx, "category"),
            "subcategory": text_of(raw, ctx, "subcategory"),
            "set_id": text_of(raw, ctx, "set_id"),
            "figure_id": text_of(raw, ctx, "figure_id"),
            "question_id": text_of(raw, ctx, "question_id"),
        }
        paper_answer = gt
    else:
        answer = yes_no(text_of(raw, ctx, "answer"))
        if answer is None:
            raise ctx.fail(f"column 'answer' must be Yes or No, got {raw.get('answer')!r}")
        index = text_of(raw, ctx, "index")
        parts = index.split("_")
        if len(parts) < 5:
            raise ctx.fail(f"column 'index' {index!r} does not hold category_subcategory_set_figure_question ids")
        keys = {
            "category": text_of(raw, ctx, "category", required=False) or parts[0],
            "subcategory": text_of(raw, ctx, "l2-category", "subcategory", required=False) or parts[1],
            "set_id": parts[-3],
            "figure_id": parts[-2],
            "question_id": parts[-1],
        }
        paper_answer = "1" if answer == "Yes" else "0"
    rid = "_".join(keys[k] for k in ("category", "subcategory", "set_id", "figure_id", "question_id"))
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=rid,
        images=decode_images(value, ctx, "image"),
        question=strip_instructions(text_of(raw, ctx, "question")),
        options=["Yes", "No"],
        answer=answer,
        answer_type="yesno",
        category=keys["category"],
        subcategory=keys["subcategory"],
        group_keys=keys,
        paper_branch="hallusion",
        paper_answer=paper_answer,
    )


def official(rows: list[BenchmarkRow], results: list[SampleResult]) -> dict[str, float]:
    """``aAcc``, ``fAcc`` and ``qAcc``."""
    m = {"aAcc": accuracy(s.correct for s in results)[2]}
    figure = []
    question = []
    for r, s in zip(rows, results):
        k = r.group_keys
        base = f"{k.get('category')}_{k.get('subcategory')}_{k.get('set_id')}"
        if not (k.get("category") == "VS" and str(k.get("figure_id")) == "0"):
            figure.append((f"{base}_{k.get('figure_id')}", s.correct))
        question.append((f"{base}_{k.get('question_id')}", s.correct))
    m["fAcc"] = all_correct_groups(figure)[2]
    m["qAcc"] = all_correct_groups(question)[2]
    return m


BENCHMARKS = (
    Benchmark(
        name="hallusionbench",
        title="HallusionBench (image split)",
        hf_ids=("lmms-lab/HallusionBench",),
        split="image",
        mapper=map_hallusionbench,
        id_columns=("index",),
        official=official,
        headline="qAcc",
        shown=("aAcc", "fAcc"),
        files=("data/image-*.parquet", "image-*.parquet", "HallusionBench.tsv", "*.tsv"),
        dir_names=("HallusionBench", "hallusionbench"),
        aliases=("hallusion",),
    ),
)
