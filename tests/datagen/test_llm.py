"""The LLM question writer's checks (against real scene graphs) and, with a real `vllm serve` (CPU build) of the tiny
model, the writer and the pass@k verifier end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from cluster.verify import verify_questions
from datagen import geometry as geo
from datagen.llm import (
    ChatClient,
    EndpointSettings,
    check_written,
    scene_for_prompt,
    write_questions,
)
from datagen.questions import normalize_name, singularize

ROOT = Path(__file__).resolve().parents[2]


def _reply(**kw) -> str:
    d = {"category": "count", "question": "How many cups are there?", "options": ["1", "2"], "answer": "1",
         "objects": [], "level": "easy", "rating": 2}  # fmt: skip
    d.update(kw)
    return json.dumps(d)


def _image_with_repeat(vg_images):
    for img in vg_images:
        keys = Counter(singularize(normalize_name(o.name)) for o in img.objects.values())
        name, n = keys.most_common(1)[0]
        if n >= 2:
            return img, name, n
    raise AssertionError("no image with a repeated name")


def test_writer_checks_and_corrections(vg_images):
    img, name, n = _image_with_repeat(vg_images)
    ids, text = scene_for_prompt(img)
    assert f"Image size: {img.width} x {img.height}" in text and len(ids) == len(img.objects)
    ref = next(k for k, o in ids.items() if singularize(normalize_name(o.name)) == name)
    q = f"How many {name}s are there in the image?"
    wrong, right = str(n + 1), str(n)

    def check(**kw):
        return check_written(_reply(**{"question": q, "objects": [ref], **kw}), "count", img, ids)

    question, outcome = check(options=[wrong, right], answer=right)
    assert outcome == "ok" and question["options"][question["answer_index"]] == right
    question, outcome = check(options=[wrong, right], answer=wrong)  # wrong answer, right one offered: corrected
    assert outcome == "corrected_count" and question["options"][question["answer_index"]] == right
    assert check(options=[wrong, str(n + 2)], answer=wrong) == (None, "count_wrong")
    assert check(options=[wrong, right], answer="7") == (None, "answer_not_in_options")
    assert check(options=["1", "2", "3", "4", "5"], answer="1") == (None, "option_count")
    assert check(options=[right, right], answer=right) == (None, "duplicate_options")
    assert check(options=[wrong, right], answer=right, objects=["nothing.9"]) == (None, "unknown_object_id")
    assert check(options=[wrong, right], answer=right, rating=11) == (None, "bad_rating")
    assert check(options=[wrong, right], answer=right, category="colour") == (None, "unknown_category")
    assert check_written(_reply(question=q, objects=[ref]), "depth", img, ids) == (None, "category_mismatch")
    assert check_written("{not json", "count", img, ids) == (None, "invalid_json")


def test_writer_relation_answer_checked_against_boxes(vg_images):
    for img in vg_images:
        ids, _ = scene_for_prompt(img)
        for a_id, a in ids.items():
            for b_id, b in ids.items():
                size = (img.width, img.height)
                strict = [
                    p for p in ("left of", "right of", "above", "below") if geo.relation_holds(p, a.box, b.box, size)
                ]
                if a is b or len(strict) != 1:
                    continue
                opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
                bad = opposite[strict[0]]
                question = f"Where is the {a.name} relative to the {b.name}?"
                reply = json.dumps({"category": "relation", "question": question, "options": [bad, strict[0]],
                                    "answer": bad, "objects": [a_id, b_id], "level": "medium",
                                    "rating": 4})  # fmt: skip
                question, outcome = check_written(reply, "relation", img, ids)
                assert outcome == "corrected_relation" and question["options"][question["answer_index"]] == strict[0]
                far = [
                    p for p in geo.GEOMETRIC_PREDICATES if not geo.relation_holds(p, a.box, b.box, size, loose=True)
                ]
                reply = reply.replace(f'"{strict[0]}"]', f'"{far[0]}"]')  # no right option left: rejected
                assert check_written(reply, "relation", img, ids) == (None, "relation_contradicts_boxes")
                return
    pytest.skip("no pair with exactly one strict direction")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_down_is_retried_with_backoff_then_one_error():
    from datagen.llm import EndpointError

    port = _free_port()  # nothing listens there: every attempt is refused
    client = ChatClient(EndpointSettings(model="m", url=f"http://127.0.0.1:{port}/v1", retries=2, backoff_s=0.1))
    start = time.monotonic()
    with pytest.raises(EndpointError, match=rf"127.0.0.1:{port}/v1/chat/completions: failed after 3 attempts"):
        client.chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start >= 0.1 + 0.2  # two backoffs, doubling
    assert client.usage.requests == 0


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory):
    """`vllm serve` of the tiny model (CPU build), started by the test and stopped after the module."""
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}
    # `vllm serve` itself looks up the package metadata of "vllm" (the CPU build is "vllm-cpu"): the server module
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model, "--port", str(port),
           "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--no-enable-chunked-prefill",
           "--max-num-batched-tokens", "4096", "--limit-mm-per-prompt", '{"image": 1}', "--seed", "0"]  # fmt: skip
    log_file = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_file, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vllm server exited: {log_file.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"vllm server not up in 600 s: {log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(2)
        yield url, tiny_model
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_writer_and_verifier_on_vllm_serve(vllm_server, vg_images, built, tmp_path):
    url, model = vllm_server
    s = EndpointSettings(model=model, url=url, concurrency=4, timeout_s=300, max_tokens=800, temperature=1.0)
    client = ChatClient(s)
    images = {img.image_id: img for img in vg_images[:8]}
    picks = [(iid, cat) for iid, cat in zip(images, ["count", "relation", "existence", "size"] * 2)]
    accepted, outcomes = write_questions(picks, images.__getitem__, client, tmp_path / "writer.jsonl")
    assert sum(outcomes.values()) == len(picks)
    assert "invalid_json" not in outcomes  # the JSON schema was enforced by the server
    replies = [json.loads(line) for line in (tmp_path / "writer.jsonl").read_text().splitlines()]
    keys = {"category", "question", "options", "answer", "objects", "level", "rating"}
    for rec in replies:
        if rec["outcome"] != "truncated":  # well-formed JSON unless max_tokens cut it (counted apart)
            assert set(json.loads(rec["reply"], strict=False)) == keys
    # a random tiny model writes nonsense: it is rejected with a reason (or corrected), never kept as it came
    assert sum(v for k, v in outcomes.items() if k != "ok") >= len(picks) - 1, outcomes
    assert client.usage.requests == len(picks) and client.usage.prompt_tokens > 0
    # resumable: a rerun asks nothing
    again = ChatClient(s)
    assert write_questions(picks, images.__getitem__, again, tmp_path / "writer.jsonl") == (accepted, outcomes)
    assert again.usage.requests == 0

    # verifier: pass@k with the training prompt and the evaluation's answer extraction
    from datagen.stvqa import load_stvqa
    from rewards.prompt import PromptBuilder

    rows = load_stvqa(built, "val").to_list()[:3]
    builder = PromptBuilder()
    items = [
        (r["image_id"], builder.text(r["question_only"], r["options"], (224, 224)), r["options"],
         "ABCD".index(r["answer_only"]), r["images"][0]["bytes"])
        for r in rows
    ]  # fmt: skip
    vs = EndpointSettings(model=model, url=url, concurrency=3, timeout_s=300, max_tokens=64, temperature=1.0)
    vclient = ChatClient(vs)
    passes = verify_questions(items, vclient, 2, tmp_path / "verifier.jsonl")
    assert set(passes) == {r["image_id"] for r in rows} and all(0 <= p <= 2 for p in passes.values())
    assert vclient.usage.requests == 2 * len(rows) and vclient.usage.prompt_tokens > 0


@pytest.mark.slow
def test_verifier_on_the_rollout_pool(ray_local, tiny_model, built, tmp_path):
    from cluster.verify import VerifierSettings, verify_on_pool
    from datagen.stvqa import load_stvqa
    from rewards.prompt import PromptBuilder, PromptSettings

    rows = load_stvqa(built, "val").to_list()[:3]
    builder = PromptBuilder()
    items = [
        (r["image_id"], builder.text(r["question_only"], r["options"], (224, 224)), r["options"],
         "ABCD".index(r["answer_only"]), r["images"][0]["bytes"])
        for r in rows
    ]  # fmt: skip
    vs = VerifierSettings(model=tiny_model, tries=3, backend="pool", pool_engine="vllm", max_new_tokens=48,
                          dtype="float32")  # fmt: skip
    passes = verify_on_pool(items, vs, tmp_path / "verifier.jsonl", PromptSettings())
    assert set(passes) == {r["image_id"] for r in rows} and all(0 <= p <= 3 for p in passes.values())
    recs = [json.loads(line) for line in (tmp_path / "verifier.jsonl").read_text().splitlines()]
    assert all(len(rec["letters"]) == 3 for rec in recs)  # one prompt group of `tries` responses per question
    assert verify_on_pool(items, vs, tmp_path / "verifier.jsonl", PromptSettings()) == passes  # resumed, nothing new


@pytest.mark.slow
def test_streamed_build_with_the_writer_on_vllm_serve(vllm_server, vg_root, tmp_path, caplog):
    """The whole path: the builder's writer stage on the server; nonsense from the random tiny model never becomes
    a row (the build refuses, or keeps only questions that passed every check)."""
    import logging

    from datagen.build import BuildError
    from datagen.stream import StreamSettings, build_streamed
    from datagen.stvqa import load_stvqa

    url, model = vllm_server
    s = EndpointSettings(model=model, url=url, concurrency=4, timeout_s=300, max_tokens=400, temperature=1.0)
    out = tmp_path / "ds"
    with caplog.at_level(logging.INFO, logger="datagen"):
        try:
            counts = build_streamed(vg_root, out, limit=6, writer=s, stream=StreamSettings(workers=1))
        except BuildError as e:
            assert "no question passed the writer's checks" in str(e)
            assert not out.exists() and not (tmp_path / ".ds.partial").exists()
            counts = None
    assert "writer: " in caplog.text and "questions kept" in caplog.text and "prompt_tokens" in caplog.text
    if counts is not None:
        for split in ("train", "val"):
            for row in load_stvqa(out, split).to_list():
                assert row["answer_option_text_only"][4:] in row["options"]
