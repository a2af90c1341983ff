"""The paper's question pipeline on any OpenAI-compatible chat endpoint: the LLM question writer and the HTTP client
the VLM verifier (:mod:`cluster.verify`) shares.

Writer (:func:`write_questions`): per chosen ``(image, category)`` the scene graph (object ids ``name.N``, pixel
boxes, relationships), the image size and the target category go into the prompt; a JSON object comes back
(``category``, ``question``, ``options``, ``answer``, ``objects``, ``level``, ``rating``). It is parsed and checked
(:func:`check_written`): known category equal to the target, 2-4 distinct options, the answer among them, ids of the
scene, level and rating in range; count, existence and relation answers are also checked against the scene graph
and corrected (the right option is among the options) or rejected. Every rejection and correction is counted by
reason. The request asks for the JSON schema :data:`QUESTION_SCHEMA` as structured output (``response_format``),
which vLLM and hosted APIs enforce, so even a small model returns well-formed JSON.

Verifier: :mod:`cluster.verify` (it reads answers with the evaluation's extraction and can run on the rollout pool,
both of which sit above the data generator).

Both talk HTTP through :class:`ChatClient` (standard library only): bounded concurrency (threads), a request
timeout, retries with exponential backoff on connection errors, timeouts, 429 and 5xx, and token and cost
accounting. Results are appended to a JSON-lines file as they come, so a rerun skips what is done (resumable).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from datagen import geometry as geo
from datagen.questions import CATEGORIES, EXISTENCE_PHRASES, PREDICATE_ALIASES, id_name, normalize_name, singularize
from datagen.vg import VGImage

log = logging.getLogger(__name__)

LEVELS = ("easy", "medium", "hard")
"""Difficulty levels of the published schema."""

QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "question": {"type": "string", "maxLength": 200},
        "options": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 2, "maxItems": 4},
        "answer": {"type": "string", "maxLength": 40},
        "objects": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 1, "maxItems": 3},
        "level": {"type": "string", "enum": list(LEVELS)},
        "rating": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["category", "question", "options", "answer", "objects", "level", "rating"],
    "additionalProperties": False,
}
"""JSON schema of one written question (sent as structured output; the length caps keep a reply within
:attr:`EndpointSettings.max_tokens` even from a model that rambles)."""

CATEGORY_HINTS = {
    "relation": "the spatial relation of one object to another (left of, right of, above, below, on, under, in "
    "front of, behind, near, far from)",
    "reach": "whether a person can reach an object, or which of two objects a person can reach",
    "size": "which of two or three objects looks larger or smaller in the image",
    "orientation": "whether an object is oriented horizontally or vertically",
    "instance_location": "in which part of the image (top left, top right, bottom left, bottom right) an object is",
    "depth": "which of two objects is closer to or farther from the camera",
    "distance": "which of two objects is closer to or farther from a third object",
    "count": "how many instances of one object name there are in the image",
    "existence": "whether there is an object of some name in a given relation (on, under, to the left of, to the "
    "right of, above, below, near) to another object; answer yes or no",
}
"""One-line description of each category, given to the writer."""


class EndpointError(RuntimeError):
    """The endpoint failed after all retries (the message names the URL and the last error)."""


@dataclass
class EndpointSettings:
    """An OpenAI-compatible chat endpoint and how to call it."""

    model: str = ""
    """Model name sent in each request (for ``vllm serve``: the served model name or path)."""
    url: str = "http://localhost:8000/v1"
    """Base URL; requests go to ``<url>/chat/completions``."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (sent as a Bearer token when set)."""
    concurrency: int = 8
    """Requests in flight at most."""
    timeout_s: float = 120.0
    """Deadline of one request."""
    retries: int = 4
    """Further attempts after a failed request (connection error, timeout, HTTP 429 or 5xx)."""
    backoff_s: float = 1.0
    """First wait before a retry; doubled each time, with up to 25% jitter."""
    max_tokens: int = 400
    """Completion tokens per request at most."""
    temperature: float = 0.7
    """Sampling temperature."""
    price_in_per_mtok: float = 0.0
    """Price of a million prompt tokens (cost accounting; 0 for a local server)."""
    price_out_per_mtok: float = 0.0
    """Price of a million completion tokens."""


@dataclass
class Usage:
    """Token and request counts of one stage (thread-safe adds)."""

    requests: int = 0
    """Successful requests."""
    retries: int = 0
    """Failed attempts that were retried."""
    prompt_tokens: int = 0
    """Prompt tokens reported by the endpoint."""
    completion_tokens: int = 0
    """Completion tokens reported by the endpoint."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, usage: dict | None, retries: int) -> None:
        with self.lock:
            self.requests += 1
            self.retries += retries
            self.prompt_tokens += int((usage or {}).get("prompt_tokens") or 0)
            self.completion_tokens += int((usage or {}).get("completion_tokens") or 0)

    def cost(self, s: EndpointSettings) -> float:
        """Cost in the currency of the prices."""
        return (self.prompt_tokens * s.price_in_per_mtok + self.completion_tokens * s.price_out_per_mtok) / 1e6

    def as_dict(self, s: EndpointSettings) -> dict:
        return {
            "requests": self.requests, "retries": self.retries, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cost": round(self.cost(s), 6),
        }  # fmt: skip


class ChatClient:
    """Plain-HTTP client of ``<url>/chat/completions`` with timeout, retries and backoff."""

    def __init__(self, settings: EndpointSettings):
        if not settings.model:
            raise ValueError("the endpoint needs a model name (--writer-model / --verify-model)")
        self.s = settings
        self.usage = Usage()

    def chat(self, messages: list[dict], **extra) -> str:
        """The first choice's message content; raises :class:`EndpointError` after the retries."""
        return self.chat_full(messages, **extra)[0]

    def chat_full(self, messages: list[dict], **extra) -> tuple[str, str]:
        """``(content, finish_reason)`` of the first choice; raises :class:`EndpointError` after the retries."""
        body = {"model": self.s.model, "messages": messages, "max_tokens": self.s.max_tokens,
                "temperature": self.s.temperature, **extra}  # fmt: skip
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.s.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.s.url.rstrip("/") + "/chat/completions"
        data = json.dumps(body).encode()
        last: Exception | None = None
        for attempt in range(self.s.retries + 1):
            if attempt:
                time.sleep(self.s.backoff_s * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.s.timeout_s) as resp:
                    reply = json.loads(resp.read())
                self.usage.add(reply.get("usage"), attempt)
                choice = reply["choices"][0]
                return choice["message"]["content"] or "", str(choice.get("finish_reason") or "")
            except urllib.error.HTTPError as e:
                last = e
                if e.code != 429 and e.code < 500:  # a request the server will never accept: no retry
                    detail = " ".join(e.read().decode(errors="replace").split())[:300]
                    raise EndpointError(f"{url}: HTTP {e.code} ({detail})") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = e
            except (ValueError, KeyError, IndexError) as e:  # not an OpenAI-style reply
                raise EndpointError(f"{url}: unexpected reply ({type(e).__name__}: {e})") from e
        raise EndpointError(f"{url}: failed after {self.s.retries + 1} attempts ({type(last).__name__}: {last})")


class ResultLog:
    """Append-only JSON-lines results keyed by ``key``; read back on a rerun (resumption)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut by a kill
                    continue
                self.done[rec["key"]] = rec
        self.lock = threading.Lock()
        self.fh = open(self.path, "a")  # noqa: SIM115 - closed by close()

    def add(self, rec: dict) -> None:
        with self.lock:
            self.fh.write(json.dumps(rec) + "\n")
            self.fh.flush()
            self.done[rec["key"]] = rec

    def close(self) -> None:
        self.fh.close()


def run_bounded(fn: Callable, items: Iterable, concurrency: int) -> None:
    """``fn(item)`` for every item on ``concurrency`` threads, at most ``2 * concurrency`` queued (bounded memory);
    the first exception stops the run and is raised."""
    with cf.ThreadPoolExecutor(concurrency) as pool:
        pending: set = set()
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) >= 2 * concurrency:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    f.result()
        for f in cf.as_completed(pending):
            f.result()


# ----------------------------------------------------------------------------------------------------------------
# writer


def scene_for_prompt(img: VGImage) -> tuple[dict[str, object], str]:
    """Ids ``name.N`` of all objects of ``img`` (by id) and the scene text given to the writer."""
    counts: Counter = Counter()
    ids: dict[str, object] = {}
    by_oid = {}
    lines = [f"Image size: {img.width} x {img.height} pixels (x grows right, y grows down)", "Objects:"]
    for o in img.objects.values():
        base = id_name(o.name)
        counts[base] += 1
        oid = f"{base}.{counts[base]}"
        ids[oid] = o
        by_oid[o.object_id] = oid
        x1, y1, x2, y2 = (round(v) for v in o.box)
        lines.append(f"- {oid} ({o.name}): [{x1}, {y1}, {x2}, {y2}]")
    lines.append("Relationships:")
    for r in img.relations:
        lines.append(f"- {by_oid[r.subject_id]} {r.predicate} {by_oid[r.object_id]}")
    return ids, "\n".join(lines)


def writer_messages(scene_text: str, category: str) -> list[dict]:
    """The chat messages asking for one question of ``category`` about a scene."""
    system = (
        "You write one multiple-choice question about the spatial layout of an image, from its scene graph. "
        "Reply with one JSON object only."
    )
    user = (
        f"{scene_text}\n\nWrite one question of the category '{category}': {CATEGORY_HINTS[category]}. "
        "Name objects by their names (not their ids); ask only about objects whose answer follows from the boxes "
        "and relationships. Give 2 to 4 distinct options, the answer (exactly one of the options), the ids of the "
        "objects the question is about (in the order the question names them), the difficulty level (easy, medium "
        "or hard) and a difficulty rating from 1 to 10.\n"
        'JSON keys: "category", "question", "options", "answer", "objects", "level", "rating".'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _count_of(img: VGImage, o) -> int:
    key = singularize(normalize_name(o.name))
    return sum(1 for x in img.objects.values() if singularize(normalize_name(x.name)) == key)


def check_written(reply: str, category: str, img: VGImage, ids: dict) -> tuple[dict | None, str]:
    """Parse and check one writer reply for ``category`` about ``img`` (``ids``: the prompt's object ids).

    Returns ``(question, outcome)``: the question (``category``, ``question``, ``options``, ``answer_index``,
    ``level``, ``rating``) and ``"ok"`` or ``"corrected_<what>"``; or ``(None, "<reason>")`` when rejected. The
    scene-graph checks: count (the answer must be the number of annotated instances of the named object), existence
    (for a predicate with a geometric definition, "yes" must hold at least loosely for some instance and "no" must
    not hold strictly) and relation (the answer predicate must hold at least loosely for the two named objects).
    """
    try:
        d = json.loads(reply, strict=False)  # control characters inside strings: the checks below judge
    except ValueError:
        return None, "invalid_json"
    if not isinstance(d, dict):
        return None, "invalid_json"
    if d.get("category") not in CATEGORIES:
        return None, "unknown_category"
    if d["category"] != category:
        return None, "category_mismatch"
    q, opts, ans = d.get("question"), d.get("options"), d.get("answer")
    if not isinstance(q, str) or not q.strip():
        return None, "empty_question"
    if not isinstance(opts, list) or not all(isinstance(o, str) and o.strip() for o in opts):
        return None, "bad_options"
    opts = [" ".join(o.split()) for o in opts]
    if not 2 <= len(opts) <= 4:
        return None, "option_count"
    if len({o.lower() for o in opts}) != len(opts):
        return None, "duplicate_options"
    if not isinstance(ans, str) or " ".join(ans.split()).lower() not in [o.lower() for o in opts]:
        return None, "answer_not_in_options"
    index = [o.lower() for o in opts].index(" ".join(ans.split()).lower())
    refs = d.get("objects")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r in ids for r in refs):
        return None, "unknown_object_id"
    level, rating = d.get("level"), d.get("rating")
    if level not in LEVELS:
        return None, "bad_level"
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
        return None, "bad_rating"
    objs = [ids[r] for r in refs]
    size = (img.width, img.height)
    outcome = "ok"
    lower = [o.lower() for o in opts]
    if category == "count":
        n = str(_count_of(img, objs[0]))
        if lower[index] != n:
            if n not in lower:
                return None, "count_wrong"
            index, outcome = lower.index(n), "corrected_count"
    elif category == "existence":
        if set(lower) != {"yes", "no"}:
            return None, "existence_not_yes_no"
        pred = next((p for p, phrase in EXISTENCE_PHRASES.items() if f" {phrase} " in f" {q.lower()} "), None)
        if pred is not None and len(objs) >= 2:
            subjects = [
                o for o in img.objects.values()
                if singularize(normalize_name(o.name)) == singularize(normalize_name(objs[0].name))
            ]  # fmt: skip
            target = objs[-1].box
            holds = any(geo.relation_holds(pred, o.box, target, size) for o in subjects)
            loose = any(geo.relation_holds(pred, o.box, target, size, loose=True) for o in subjects)
            if holds and lower[index] == "no":
                index, outcome = lower.index("yes"), "corrected_existence"
            elif not loose and lower[index] == "yes":
                index, outcome = lower.index("no"), "corrected_existence"
            elif loose and not holds:
                return None, "existence_ambiguous"
    elif category == "relation":
        if len(objs) < 2:
            return None, "relation_needs_two_objects"
        a, b = objs[0].box, objs[1].box
        preds = [PREDICATE_ALIASES.get(o.lower()) for o in opts]
        if preds[index] is not None and not geo.relation_holds(preds[index], a, b, size, loose=True):
            right = [i for i, p in enumerate(preds) if p is not None and geo.relation_holds(p, a, b, size)]
            if len(right) != 1:
                return None, "relation_contradicts_boxes"
            index, outcome = right[0], "corrected_relation"
    written = {"category": category, "question": " ".join(q.split()), "options": opts, "answer_index": index,
               "level": level, "rating": rating}  # fmt: skip
    return written, outcome


def write_questions(
    picks: list[tuple[int, str]], scene_of: Callable[[int], VGImage], client: ChatClient, log_path: Path,
    structured: bool = True,
) -> tuple[dict[tuple[int, str], dict], Counter]:  # fmt: skip
    """Ask the writer for every ``(image_id, category)`` of ``picks`` (skipping those in ``log_path`` already).

    ``scene_of(image_id)`` gives the image's scene graph. Returns the accepted questions by pick and the outcome
    counts (``ok``, ``corrected_*`` and every rejection reason)."""
    results = ResultLog(log_path)

    def one(pick: tuple[int, str]) -> None:
        iid, cat = pick
        img = scene_of(iid)
        ids, text = scene_for_prompt(img)
        extra = {}
        if structured:  # the schema with the category fixed to the target
            schema = {**QUESTION_SCHEMA, "properties": {**QUESTION_SCHEMA["properties"], "category": {"enum": [cat]}}}
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "question", "schema": schema}}
        reply, finish = client.chat_full(writer_messages(text, cat), **extra)
        question, outcome = check_written(reply, cat, img, ids)
        if question is None and outcome == "invalid_json" and finish == "length":
            outcome = "truncated"  # max_tokens reached before the JSON closed
        results.add({"key": f"{iid}:{cat}", "outcome": outcome, "question": question, "reply": reply})

    todo = [p for p in picks if f"{p[0]}:{p[1]}" not in results.done]
    if len(todo) < len(picks):
        log.info("writer: %d of %d questions already written", len(picks) - len(todo), len(picks))
    try:
        run_bounded(one, todo, client.s.concurrency)
    finally:
        results.close()
    accepted, outcomes = {}, Counter()
    for iid, cat in picks:
        rec = results.done[f"{iid}:{cat}"]
        outcomes[rec["outcome"]] += 1
        if rec["question"] is not None:
            accepted[(iid, cat)] = rec["question"]
    return accepted, outcomes


# ----------------------------------------------------------------------------------------------------------------
# verifier
