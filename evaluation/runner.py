"""Running a policy on benchmarks: prompts from the training prompt builder, generation with a rollout engine
(greedy by default), then :func:`evaluation.report.evaluate_rows`.

:func:`build_requests` turns :class:`evaluation.base.BenchmarkRow` into :class:`actors.records.RolloutRequest`
through the SAME :class:`rewards.prompt.PromptBuilder` as training: the question's own options as ``(A) text``
lines and ``Image size: (W x H)`` of the first image's original size. :func:`run_policy` loads benchmarks, generates
and scores.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from actors.records import RolloutRequest, TaskSample
from actors.settings import RolloutSettings, resolve_dtype
from evaluation.answers import LETTERS, answer_span
from evaluation.base import BenchmarkRow
from evaluation.registry import iter_benchmark, resolve_name, resolve_source
from evaluation.report import EvalReport, evaluate_rows
from rewards.prompt import PromptBuilder, PromptSettings
from rewards.spatial import RewardConfig

log = logging.getLogger(__name__)

OPEN_ANSWER_HINT = "Answer with a single word or number."
"""Appended to the question of an open-answer row (no options)."""
OPEN_OPTIONS_TEXT = "(none: write the answer itself in the answer block)"
"""Stands in the template's options slot for an open-answer row."""


# --------------------------------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------------------------------


def prompt_messages(row: BenchmarkRow, builder: PromptBuilder) -> list[dict]:
    """The chat messages of a row, from the training prompt builder.

    Rows with options use ``builder.messages(question, options, image_size)`` unchanged. Open-answer rows (no
    options; the builder requires some) fill the builder's own template with :data:`OPEN_OPTIONS_TEXT` in the
    options slot and :data:`OPEN_ANSWER_HINT` after the question. A row with k > 1 images gets k image entries,
    all before the text, as the builder places its one image."""
    size = row.image_size
    if row.options:
        messages = builder.messages(row.question, list(row.options), size)
    else:
        text = builder.template.format(
            width=int(size[0]),
            height=int(size[1]),
            question=f"{row.question.strip()}\n{OPEN_ANSWER_HINT}",
            options=OPEN_OPTIONS_TEXT,
        )
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    if len(row.images) > 1:
        content = messages[0]["content"]
        messages[0]["content"] = [{"type": "image"} for _ in range(len(row.images) - 1)] + content
    return messages


def reference_answer(row: BenchmarkRow) -> str:
    """The answer written the way the prompt asks for it (``(B) text``, or the open answer)."""
    if row.ground_truth:
        return answer_span(row.ground_truth)
    if row.options and row.answer_type == "mcq":
        return f"({row.answer}) {row.options[LETTERS.index(row.answer)]}"
    if row.options and row.answer_type == "yesno":
        for i, text in enumerate(row.options):
            if text.strip().lower() == row.answer.lower():
                return f"({LETTERS[i]}) {text}"
    return row.answer


def build_requests(
    rows: Sequence[BenchmarkRow], prompt_builder: PromptBuilder, *, start: int = 0
) -> list[RolloutRequest]:
    """One :class:`RolloutRequest` per row: messages from :func:`prompt_messages`, images scaled by the builder,
    and a :class:`TaskSample` with the row's image size (the first image's original size). ``uid`` is
    ``eval-<benchmark>-<id>``; ``index`` counts from ``start``."""
    requests = []
    for i, row in enumerate(rows):
        if not row.images:
            raise ValueError(f"{row.benchmark} row {row.id}: no image to build a prompt from")
        sample = TaskSample(
            id=f"{row.benchmark}/{row.id}",
            ground_truth=row.ground_truth or reference_answer(row),
            image_size=tuple(row.image_size),
            category=row.category,
        )
        requests.append(
            RolloutRequest(
                uid=f"eval-{row.benchmark}-{row.id}",
                index=start + i,
                messages=prompt_messages(row, prompt_builder),
                images=[prompt_builder.image(im) for im in row.images],
                sample=sample,
            )
        )
    return requests


# --------------------------------------------------------------------------------------------------------------------
# running a policy
# --------------------------------------------------------------------------------------------------------------------


def _make_engine(model_path: str, settings: RolloutSettings, dtype: str, seed: int):
    """The project's rollout engine (vLLM, or transformers ``generate`` with ``settings.engine == "hf"``)."""
    # torch/ray/transformers (and vLLM) are heavy; scoring precomputed predictions must not need them
    from actors.common import setup_process
    from actors.rollout import make_engine

    device = setup_process(settings.device, settings.torch_threads)
    kwargs = {"seed": seed}
    if "device" in inspect.signature(make_engine).parameters:
        kwargs["device"] = device
    return make_engine(model_path, settings, resolve_dtype(dtype, device), **kwargs)


def run_policy(
    model_path: str,
    benchmarks: Sequence[str] | Mapping[str, Iterable[BenchmarkRow]],
    engine_settings: RolloutSettings | None = None,
    *,
    prompt_settings: PromptSettings | None = None,
    dtype: str = "auto",
    seed: int = 0,
    temperature: float = 0.0,
    max_new_tokens: int | None = None,
    paper_scoring: bool = False,
    sources: Mapping[str, str] | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    engine=None,
    reward_cfg: RewardConfig | None = None,
) -> EvalReport:
    """Generate one response per row with a rollout engine and score it.

    ``benchmarks``: names (loaded with :func:`evaluation.registry.iter_benchmark` from ``sources[name]`` or
    ``data_root``, at most ``limit`` rows each) or a mapping name -> rows. ``engine``: an object with
    ``generate(requests, n, *, temperature=None, max_new_tokens=None) -> list[PromptGroup]``; None builds one with
    ``actors.rollout.make_engine(model_path, engine_settings, dtype, seed)``. Greedy (temperature 0) by default.
    Rows are generated ``batch_size`` at a time; their images are released once their prompts are built.
    """
    engine_settings = engine_settings or RolloutSettings()
    builder = PromptBuilder(prompt_settings)
    sources = {resolve_name(k): v for k, v in (sources or {}).items()}
    if isinstance(benchmarks, Mapping):
        plan = [(resolve_name(k), v) for k, v in benchmarks.items()]
    else:
        plan = [
            (
                resolve_name(b),
                iter_benchmark(b, sources.get(resolve_name(b)), data_root=data_root, limit=limit),
            )
            for b in benchmarks
        ]
    if engine is None:
        engine = _make_engine(model_path, engine_settings, dtype, seed)
    all_rows: list[BenchmarkRow] = []
    outputs: list[str] = []
    reasons: list[str] = []
    t0 = time.time()
    for name, rows in plan:
        n_before = len(all_rows)
        batch: list[BenchmarkRow] = []
        for row in itertools.chain(rows, [None]):
            if row is not None:
                batch.append(row)
            if batch and (row is None or len(batch) >= batch_size):
                requests = build_requests(batch, builder, start=len(all_rows))
                for r in batch:
                    r.images = []  # the scaled copies live in the requests; keep memory flat
                groups = engine.generate(requests, 1, temperature=temperature, max_new_tokens=max_new_tokens)
                if len(groups) != len(batch):
                    raise RuntimeError(f"engine returned {len(groups)} groups for {len(batch)} requests")
                by_uid = {g.uid: g for g in groups}
                for req, r in zip(requests, batch):
                    resp = by_uid[req.uid].responses[0]
                    outputs.append(resp.text)
                    reasons.append(resp.finish_reason)
                    all_rows.append(r)
                log.info("%s: %d rows generated (%.0fs)", name, len(all_rows) - n_before, time.time() - t0)
                batch = []
    info = {
        "model": str(model_path),
        "engine": getattr(engine, "name", type(engine).__name__),
        "temperature": temperature,
        "max_new_tokens": max_new_tokens if max_new_tokens is not None else engine_settings.max_new_tokens,
        "dtype": dtype,
        "seed": seed,
        "limit": limit,
        "sources": {name: resolve_source(name, sources.get(name), data_root) for name, _ in plan},
        "seconds": round(time.time() - t0, 1),
    }
    return evaluate_rows(
        all_rows, outputs, paper_scoring=paper_scoring, reward_cfg=reward_cfg, finish_reasons=reasons, info=info
    )
