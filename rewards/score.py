"""Score a JSONL file of responses with the SpatialThinker reward.

    python -m rewards.score --preset spatialthinker --label-similarity exact IN.jsonl > OUT.jsonl
    cat IN.jsonl | python -m rewards.score - > OUT.jsonl

Each input line is a JSON object with ``response``, ``ground_truth`` (the STVQA ``answer_option_text`` string) and
``image_size`` ``[W, H]``. Each output line is the input line with ``format``, ``count``, ``accuracy``, ``spatial``
and ``total`` added (and ``error`` when the line could not be scored or its format failed), in input order. A line
that is not a JSON object or lacks a key gets zeros and an ``error``; nothing stops the run. A summary goes to
stderr: lines, mean total, errors (lines that could not be scored, as opposed to responses whose format failed) and
microseconds per response (wall and CPU, start-up excluded).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

from rewards.kernels import warmup
from rewards.similarity import BACKENDS, SimilarityUnavailable, get_similarity
from rewards.spatial import PRESETS, SAMPLE_ERROR, RewardConfig, score_rows
from rewards.template import loads_json

log = logging.getLogger("rewards.score")

OUTPUT_KEYS = ("format", "count", "accuracy", "spatial", "total", "error")
"""Keys the scorer writes; an input line that already has one is rewritten whole instead of extended in place."""

_NEEDED = ("response", "ground_truth", "image_size")


_SCORES = b', "format": %s, "count": %s, "accuracy": %s, "spatial": %a, "total": %a}\n'
_SCORES_ERR = b', "format": %s, "count": %s, "accuracy": %s, "spatial": %a, "total": %a, "error": %s}\n'
_REPR = {0.0: b"0.0", 1.0: b"1.0"}


def _num(x: float) -> bytes:
    return _REPR.get(x) or repr(x).encode()


def _emit(raw: bytes, obj, row: list, parts: list) -> None:
    """Append the output line for input ``raw`` (parsed ``obj``) to ``parts``: the input's own text with the scores
    added before its closing brace, so every input field is kept byte for byte (no copy of the input is made).
    Inputs that already carry an output key, or are not JSON objects, are written anew."""
    total, fmt, count, acc, spatial, err = row
    if type(obj) is dict and obj and obj.keys().isdisjoint(OUTPUT_KEYS):
        if raw[-2:] == b"}\n":
            head = memoryview(raw)[:-2]
        else:
            body = raw.rstrip()
            head = body[:-1] if body[-1:] == b"}" else None
        if head is not None:
            parts.append(head)
            if err:
                tail = _SCORES_ERR % (_num(fmt), _num(count), _num(acc), spatial, total, json.dumps(err).encode())
            else:
                tail = _SCORES % (_num(fmt), _num(count), _num(acc), spatial, total)
            parts.append(tail)
            return
    merged = {k: v for k, v in obj.items() if k not in OUTPUT_KEYS} if type(obj) is dict else {}
    merged.update(format=fmt, count=count, accuracy=acc, spatial=spatial, total=total)
    if err:
        merged["error"] = err
    parts.append(json.dumps(merged, ensure_ascii=False).encode() + b"\n")


def _read_chunks(stream: BinaryIO, size: int) -> Iterator[list[bytes]]:
    """Lists of about ``size`` lines (``readlines`` with a byte hint: one C call per chunk)."""
    hint = max(1, size) * 1024
    while True:
        chunk = stream.readlines(hint)
        if not chunk:
            return
        yield chunk


def score_stream(inp: BinaryIO, out: BinaryIO, cfg: RewardConfig, batch_size: int = 4096) -> dict:
    """Score every line of ``inp`` into ``out``; returns the summary (lines, mean_total, errors, seconds, cpu)."""
    n = errors = 0
    total_sum = 0.0
    t0 = time.perf_counter()
    c0 = time.process_time()
    line_no = 0
    for chunk in _read_chunks(inp, batch_size):
        records: list = []  # (raw, parsed object, error or None)
        items: list = []
        add_record = records.append
        add_item = items.append
        for raw in chunk:
            line_no += 1
            try:
                obj = loads_json(raw)
            except (ValueError, RecursionError) as e:
                if not raw.strip():
                    continue  # blank lines are not records
                add_record((raw, None, f"{SAMPLE_ERROR}line {line_no}: not valid JSON ({type(e).__name__})"))
                continue
            if type(obj) is dict:
                try:
                    add_item((obj["response"], obj["ground_truth"], obj["image_size"]))
                    add_record((raw, obj, None))
                    continue
                except KeyError:
                    missing = [k for k in _NEEDED if k not in obj]
                    add_record((raw, obj, f"{SAMPLE_ERROR}line {line_no}: missing key(s) {missing}"))
                    continue
            add_record((raw, obj, f"{SAMPLE_ERROR}line {line_no}: expected a JSON object, got {type(obj).__name__}"))
        rows = iter(score_rows(items, cfg))
        parts: list = []
        for raw, obj, bad in records:
            if bad is None:
                row = next(rows)
                if row[5] and row[5].startswith(SAMPLE_ERROR):
                    errors += 1
            else:
                row = [0.0, 0.0, 0.0, 0.0, 0.0, bad]
                errors += 1
            total_sum += row[0]
            _emit(raw, obj, row, parts)
        n += len(records)
        out.write(b"".join(parts))  # one copy and one write per chunk (a write per line costs a system call)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"lines": n, "mean_total": total_sum / n if n else 0.0, "errors": errors, "seconds": seconds, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rewards.score", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="JSONL file, or - for standard input")
    ap.add_argument("--preset", choices=PRESETS, default="spatialthinker")
    ap.add_argument("--label-similarity", choices=BACKENDS, default="exact")
    ap.add_argument("--batch-size", type=int, default=4096, help="lines scored per batch (default 4096)")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(name)s: %(message)s", stream=sys.stderr)
    if a.batch_size < 1:
        ap.error("--batch-size must be >= 1")
    t0 = time.perf_counter()
    cfg = RewardConfig(preset=a.preset, label_similarity=a.label_similarity)
    try:
        get_similarity(cfg.label_similarity)
    except SimilarityUnavailable as e:
        log.error("%s", e)
        return 2
    warmup()
    # The scorer makes no reference cycles (reference counting frees everything), so the cyclic collector only
    # costs time here: move the start-up objects (NumPy, Numba) out of its sight and let it run rarely.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    startup = time.perf_counter() - t0
    try:
        inp = sys.stdin.buffer if a.input == "-" else open(a.input, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        log.error("cannot read %s: %s", a.input, e)
        return 2
    try:
        s = score_stream(inp, sys.stdout.buffer, cfg, a.batch_size)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if inp is not sys.stdin.buffer:
            inp.close()
    per = 1e6 / s["lines"] if s["lines"] else 0.0
    log.info(
        "lines=%d mean_total=%.6f errors=%d us_per_response=%.2f cpu_us_per_response=%.2f "
        "(read+score+write; start-up %.2fs not included)",
        s["lines"],
        s["mean_total"],
        s["errors"],
        s["seconds"] * per,
        s["cpu"] * per,
        startup,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
