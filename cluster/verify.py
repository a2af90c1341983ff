"""The VLM verifier (pass@k, the paper's keep rule) on an OpenAI-compatible endpoint or the project's rollout pool.

Each question is answered ``tries`` times with the training prompt (:class:`rewards.prompt.PromptBuilder`); the
answer letter of each response is read with the evaluation's extraction (:func:`evaluation.answers.extract_choice`)
and a question is kept when at least one try is right. Backends:

- ``endpoint``: ``<url>/chat/completions`` of any OpenAI-compatible server (``vllm serve``, a hosted API), the image
  sent as a data URL (:func:`verify_questions`);
- ``pool``: the project's Ray rollout pool (:class:`cluster.pool.RolloutPool`, vLLM engines, or the ``hf`` engine),
  ``tries`` samples per prompt in one group, so it scales across the cluster as training does. When Ray is not
  initialised yet it connects to ``RAY_ADDRESS`` (``auto`` on a cluster node) or starts a local one.

Results go to ``verifier.jsonl`` in the build's work folder as they come (a rerun asks only for the rest).
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datagen.llm import ChatClient, EndpointSettings, ResultLog, run_bounded
from evaluation.answers import extract_choice

log = logging.getLogger(__name__)


@dataclass
class VerifierSettings:
    """Which VLM answers the questions, where, and how often."""

    model: str = ""
    """Model path (pool) or served model name / id (endpoint)."""
    tries: int = 4
    """Answers per question; kept when any is right (paper: 4)."""
    backend: str = "endpoint"
    """``endpoint`` (OpenAI-compatible HTTP) or ``pool`` (the Ray rollout pool)."""
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    """URL, concurrency, timeout and retries of the endpoint backend (its ``model`` is set from :attr:`model`)."""
    pool_workers: int = 1
    """Rollout workers of the pool backend."""
    pool_engine: str = "vllm"
    """Engine of the pool backend's workers (``vllm`` or ``hf``)."""
    pool_batch: int = 32
    """Questions per pool call (bounds the memory of images and responses)."""
    max_new_tokens: int = 512
    """Response tokens at most (the template asks for a scene graph and reasoning before the answer)."""
    temperature: float = 1.0
    """Sampling temperature of the tries."""
    dtype: str = "bfloat16"
    """Weights' dtype in the pool's engines."""
    max_model_len: int = 4096
    """Pool engines' context (prompt with image tokens plus the answer)."""
    pool_start_timeout_s: float = 900.0
    """Deadline for a pool worker to start (a vLLM engine loading a large model takes minutes)."""

    def __post_init__(self):
        if self.backend not in ("endpoint", "pool"):
            raise ValueError(f"verifier backend must be 'endpoint' or 'pool', got {self.backend!r}")
        if not isinstance(self.tries, int) or self.tries < 1:
            raise ValueError(f"verify tries must be an integer >= 1, got {self.tries!r}")
        if not self.model:
            raise ValueError("the verifier needs a model (--verify-model)")

    def run(self, items: Iterable, work: Path, prompt) -> dict[str, int]:
        """:func:`run_verifier` with these settings: what :func:`datagen.stream.build_streamed` calls."""
        return run_verifier(items, self, work, prompt)


def verifier_messages(prompt_text: str, image_bytes: bytes) -> list[dict]:
    """One user turn, image first (a data URL), then the training prompt text."""
    url = "data:image/jpeg;base64," + base64.b64encode(image_bytes).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": prompt_text}]}]  # fmt: skip


def verify_questions(
    items: Iterable[tuple[str, str, list[str], int, bytes]], client: ChatClient, tries: int, log_path: Path
) -> dict[str, int]:
    """Answer each question ``tries`` times on the endpoint; the number of right answers by key.

    ``items`` yields ``(key, prompt text, options, answer index, image bytes)``; the answer letter of a reply is
    read with :func:`evaluation.answers.extract_choice` (the evaluation's extraction). Resumable through ``log_path``.
    """
    results = ResultLog(log_path)

    def one(item) -> None:
        key, text, options, answer_index, data = item
        messages = verifier_messages(text, data)
        letters = [extract_choice(client.chat(messages), options) for _ in range(tries)]
        passes = sum(1 for letter in letters if letter == "ABCDEFGHIJ"[answer_index])
        results.add({"key": key, "passes": passes, "letters": letters})

    try:
        run_bounded(one, (it for it in items if it[0] not in results.done), client.s.concurrency)
    finally:
        results.close()
    return {k: rec["passes"] for k, rec in results.done.items()}


def run_verifier(
    items: Iterable[tuple[str, str, list[str], int, bytes]], settings: VerifierSettings, work: Path, prompt
) -> dict[str, int]:
    """Right answers out of ``settings.tries`` per question key. ``items`` yields ``(key, prompt text, options,
    answer index, image bytes)``; ``prompt`` is the build's :class:`rewards.prompt.PromptSettings`."""
    path = work / "verifier.jsonl"
    if settings.backend == "endpoint":
        ep = EndpointSettings(**{**settings.endpoint.__dict__, "model": settings.model})
        ep.max_tokens, ep.temperature = settings.max_new_tokens, settings.temperature
        client = ChatClient(ep)
        passes = verify_questions(items, client, settings.tries, path)
        log.info("verifier endpoint usage: %s", client.usage.as_dict(ep))
        return passes
    return verify_on_pool(items, settings, path, prompt)


def _batches(items: Iterator, n: int) -> Iterator[list]:
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def verify_on_pool(items: Iterable, settings: VerifierSettings, path: Path, prompt) -> dict[str, int]:
    """The pool backend: one prompt group of ``tries`` responses per question on the Ray rollout pool."""
    import ray
    from PIL import Image

    from actors.records import RolloutRequest, TaskSample
    from actors.settings import RolloutSettings
    from cluster.pool import RolloutPool
    from rewards.prompt import PromptBuilder, answer_option_text

    if not ray.is_initialized():  # the cluster named by RAY_ADDRESS (e.g. "auto" on a cluster node), else a local one
        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), include_dashboard=False)
    results = ResultLog(path)
    rollout = RolloutSettings(
        engine=settings.pool_engine, num_workers=settings.pool_workers, min_workers=1,
        max_workers=max(1, settings.pool_workers), group_size=settings.tries, temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens, use_engine_logprobs=False, max_model_len=settings.max_model_len,
        placement_timeout_s=settings.pool_start_timeout_s,
    )  # fmt: skip
    pool = RolloutPool(settings.model, rollout, settings.dtype)
    builder = PromptBuilder(prompt)
    try:
        _, unplaced = pool.add_workers(settings.pool_workers)
        if not pool.size():
            raise RuntimeError(f"none of the {settings.pool_workers} verifier rollout worker(s) could be started")
        todo = (it for it in items if it[0] not in results.done)
        for batch in _batches(todo, settings.pool_batch):
            requests = []
            for i, (key, text, options, answer_index, data) in enumerate(batch):
                image = Image.open(io.BytesIO(data)).convert("RGB")
                turn = [{"type": "image"}, {"type": "text", "text": text}]  # the training prompt, image first
                gt = f"<answer>{answer_option_text(options, 'ABCDEFGHIJ'[answer_index])}</answer>"
                requests.append(
                    RolloutRequest(
                        uid=f"verify-{key}", index=i,
                        messages=[{"role": "user", "content": turn}],
                        images=[builder.image(image)], sample=TaskSample(key, gt, image.size, ""), seed=i,
                    )
                )  # fmt: skip
            groups = pool.generate(requests, settings.tries, {"temperature": settings.temperature})
            for (key, _, options, answer_index, _), res in zip(batch, groups):
                group = ray.get(res.group)
                letters = [extract_choice(r.text, options) for r in group.responses]
                passes = sum(1 for letter in letters if letter == "ABCDEFGHIJ"[answer_index])
                results.add({"key": key, "passes": passes, "letters": letters})
    finally:
        results.close()
        pool.shutdown()
    return {k: rec["passes"] for k, rec in results.done.items()}
