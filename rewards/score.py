"""Score a JSONL file of responses with the SpatialThinker reward.

    python -m rewards.score --preset spatialthinker --label-similarity exact IN.jsonl > OUT.jsonl
    cat IN.jsonl | python -m rewards.score - > OUT.jsonl

Each input line is a JSON object with ``response``, ``ground_truth`` (the STVQA ``answer_option_text`` string) and
``image_size`` ``[W, H]``. Each output line is the input line with ``format``, ``count``, ``accuracy``, ``spatial``
and ``total`` added (and ``error`` when the line could not be scored or its format failed), in input order. A line
that is not a JSON object or lacks a key gets zeros and an ``error``; nothing stops the run. A summary goes to
stderr: lines, mean total, errors (lines that could not be scored, as opposed to responses whose format failed) and
microseconds per response (wall and CPU, start-up excluded).

Under the paper preset with exact label similarity the input is read in blocks (``--batch-size`` KiB) by the Numba
reader of :mod:`rewards.fast.scan`, which decodes the common line, scores it and writes the output line without a
Python object per line; every line of another shape goes through the Python path, which gives the same bytes
(``tests/rewards/test_score_cli.py`` compares the two). The first run after a checkout compiles the kernels (about
30 s here); later runs load them from Numba's cache.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import orjson

from rewards.constants import SCAN_OK
from rewards.fast.scan import padded, read_lines, same_bytes, write_lines
from rewards.similarity import BACKENDS, SimilarityUnavailable, get_similarity
from rewards.spatial import (
    PRESETS,
    SAMPLE_ERROR,
    RewardConfig,
    paper_fast_available,
    score_decoded,
    score_rows,
    warmup,
)
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


def _tail(row: list) -> bytes:
    """``, "format": F, ..., "total": T}\\n`` (and the error, if any) for a row ``[total, F, C, A, S, error]``."""
    total, fmt, count, acc, spatial, err = row
    if err:
        return _SCORES_ERR % (_num(fmt), _num(count), _num(acc), spatial, total, json.dumps(err).encode())
    return _SCORES % (_num(fmt), _num(count), _num(acc), spatial, total)


def _emit(raw: bytes, obj, row: list) -> bytes:
    """The output line for input ``raw`` (parsed ``obj``): the input's own text with the scores added before its
    closing brace, so every input field is kept byte for byte. Inputs that already carry an output key, or are not
    JSON objects, are written anew."""
    if type(obj) is dict and obj and obj.keys().isdisjoint(OUTPUT_KEYS):
        body = raw.rstrip()
        if body[-1:] == b"}":
            return body[:-1] + _tail(row)
    total, fmt, count, acc, spatial, err = row
    merged = {k: v for k, v in obj.items() if k not in OUTPUT_KEYS} if type(obj) is dict else {}
    merged.update(format=fmt, count=count, accuracy=acc, spatial=spatial, total=total)
    if err:
        merged["error"] = err
    return json.dumps(merged, ensure_ascii=False).encode() + b"\n"


def _score_raw_lines(lines: list, cfg: RewardConfig) -> tuple[list, int, float]:
    """Score ``(line number, bytes)`` lines by the Python path: each line's output (None for a blank line, which is
    not a record), the number of lines that could not be scored, and the sum of the totals."""
    records: list = []  # (raw, parsed object, error or None)
    items: list = []
    for line_no, raw in lines:
        try:
            obj = loads_json(raw)
        except (ValueError, RecursionError) as e:
            if not raw.strip():
                records.append(None)  # blank lines are not records
                continue
            records.append((raw, None, f"{SAMPLE_ERROR}line {line_no}: not valid JSON ({type(e).__name__})"))
            continue
        if type(obj) is dict:
            try:
                items.append((obj["response"], obj["ground_truth"], obj["image_size"]))
                records.append((raw, obj, None))
                continue
            except KeyError:
                missing = [k for k in _NEEDED if k not in obj]
                records.append((raw, obj, f"{SAMPLE_ERROR}line {line_no}: missing key(s) {missing}"))
                continue
        records.append((raw, obj, f"{SAMPLE_ERROR}line {line_no}: expected a JSON object, got {type(obj).__name__}"))
    rows = iter(score_rows(items, cfg))
    outputs: list = []
    errors = 0
    total_sum = 0.0
    for record in records:
        if record is None:
            outputs.append(None)
            continue
        raw, obj, bad = record
        if bad is None:
            row = next(rows)
            if row[5] and row[5].startswith(SAMPLE_ERROR):
                errors += 1
        else:
            row = [0.0, 0.0, 0.0, 0.0, 0.0, bad]
            errors += 1
        total_sum += row[0]
        outputs.append(_emit(raw, obj, row))
    return outputs, errors, total_sum


def _read_blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of about ``size`` bytes that end at a line end (or at the end of the input)."""
    while True:
        data = stream.read(size)
        if not data:
            return
        if data[-1:] != b"\n":
            data += stream.readline()
        yield data


def _decode_string(data: bytes, start: int, stop: int) -> str:
    """The JSON string whose escaped text is ``data[start:stop]`` (checked by the Numba reader)."""
    return loads_json(b'"' + data[start:stop] + b'"')


def _score_block(data: bytes, first_line: int, cfg: RewardConfig) -> tuple:
    """Score a block of whole lines with the Numba reader, the Python path taking the lines it leaves.

    Returns ``(output, lines, records, errors, total_sum, fast)``: ``lines`` counts the block's lines, ``records``
    the non-blank ones, ``fast`` those the Numba reader read and scored itself.
    """
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    buf = padded(data)
    if not ends.size or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    lstart = np.zeros(len(ends) + 1, dtype=np.int64)
    lstart[1:] = ends
    n_lines = len(ends)
    taken, responses, rstart, gspan, ghash, sizes = read_lines(buf, lstart)
    kind = np.ones(n_lines, dtype=np.int8)  # 1: a literal line from the Python path
    ref = np.zeros(n_lines, dtype=np.int64)
    literals: list = []
    errors = 0
    total_sum = 0.0
    numbers = b"[]"
    fast_lines = 0
    if len(taken):
        _, first, inverse = np.unique(ghash, return_index=True, return_inverse=True)
        same = same_bytes(buf, gspan, first[inverse])
        texts = [_decode_string(data, a, b) for a, b in gspan[first].tolist()]
        status, total, count, acc, spatial = score_decoded(responses, rstart, texts, inverse, sizes, cfg)
        values = np.column_stack((np.ones(len(total)), count, acc, spatial, total))
        magnitude = np.abs(values)
        # orjson writes the shortest round-trip digits as repr does, but positionally below 1e-4 (repr: 1e-05)
        plain = ((magnitude >= 1e-4) & (magnitude < 1e16)) | (values == 0.0)
        ok = (status == SCAN_OK) & same
        fast_lines = int(np.count_nonzero(ok))
        fast = ok & plain.all(axis=1)
        fast_j = np.flatnonzero(fast)
        kind[taken[fast_j]] = 0
        ref[taken[fast_j]] = np.arange(len(fast_j))
        numbers = orjson.dumps(np.ascontiguousarray(values[fast_j]).ravel(), option=orjson.OPT_SERIALIZE_NUMPY)
        total_sum += float(total[fast_j].sum())
        for j in np.flatnonzero(ok & ~fast).tolist():  # scored here, formatted by repr (as Python floats)
            row = [float(total[j]), 1.0, float(count[j]), float(acc[j]), float(spatial[j]), ""]
            literals.append(_tail(row))
            kind[taken[j]] = 2
            ref[taken[j]] = len(literals) - 1
            total_sum += row[0]
        left = np.flatnonzero(~ok).tolist()
        if left:  # decoded but left to the Python rules (another shape, an unusable ground truth)
            items = []
            for j in left:
                text = texts[inverse[j]] if same[j] else _decode_string(data, *gspan[j].tolist())
                w, h = sizes[j].tolist()
                items.append((responses[rstart[j] : rstart[j + 1]].tobytes().decode(), text, [int(w), int(h)]))
            for j, row in zip(left, score_rows(items, cfg)):
                literals.append(_tail(row))
                kind[taken[j]] = 2
                ref[taken[j]] = len(literals) - 1
                total_sum += row[0]
                errors += bool(row[5]) and row[5].startswith(SAMPLE_ERROR)
    rest = np.flatnonzero(kind == 1).tolist()
    if rest:
        spans = lstart.tolist()
        raws = [(first_line + i, data[spans[i] : spans[i + 1]]) for i in rest]
        outputs, bad, sub_total = _score_raw_lines(raws, cfg)
        errors += bad
        total_sum += sub_total
        for i, text in zip(rest, outputs):
            if text is None:
                kind[i] = 3
            else:
                literals.append(text)
                ref[i] = len(literals) - 1
    number_text = np.frombuffer(numbers, dtype=np.uint8)
    nstart = np.concatenate(([0], np.flatnonzero(number_text == 44), [len(numbers) - 1])) + 1
    lit_start = np.zeros(len(literals) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, literals), dtype=np.int64, count=len(literals)), out=lit_start[1:])
    output = write_lines(
        buf, lstart, kind, ref, number_text, nstart, np.frombuffer(b"".join(literals), dtype=np.uint8), lit_start
    )
    records = n_lines - int(np.count_nonzero(kind == 3))
    return output, n_lines, records, errors, total_sum, fast_lines


def score_stream(inp: BinaryIO, out: BinaryIO, cfg: RewardConfig, batch_size: int = 4096) -> dict:
    """Score every line of ``inp`` into ``out``; returns the summary (lines, mean_total, errors, seconds, cpu, and
    fast: the lines the Numba reader read and scored itself).

    Under the paper preset with exact similarity, blocks of about ``batch_size`` KiB are read and scored by the
    Numba reader (:mod:`rewards.fast.scan`); lines of other shapes, and other presets, go through the Python path with
    the same results.
    """
    n = errors = fast = 0
    total_sum = 0.0
    t0 = time.perf_counter()
    c0 = time.process_time()
    line_no = 1
    if paper_fast_available(cfg):
        for data in _read_blocks(inp, max(1, batch_size) * 1024):
            output, lines, records, bad, block_total, block_fast = _score_block(data, line_no, cfg)
            fast += block_fast
            out.write(output)
            line_no += lines
            n += records
            errors += bad
            total_sum += block_total
    else:
        for data in _read_blocks(inp, max(1, batch_size) * 1024):
            raws = io.BytesIO(data).readlines()  # split at b'\n' only, as the lines are numbered
            outputs, bad, block_total = _score_raw_lines(list(enumerate(raws, line_no)), cfg)
            out.write(b"".join(x for x in outputs if x is not None))  # one write per block
            line_no += len(raws)
            n += sum(x is not None for x in outputs)
            errors += bad
            total_sum += block_total
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    mean = total_sum / n if n else 0.0
    return {"lines": n, "mean_total": mean, "errors": errors, "seconds": seconds, "cpu": cpu, "fast": fast}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rewards.score", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="JSONL file, or - for standard input")
    ap.add_argument("--preset", choices=PRESETS, default="spatialthinker")
    ap.add_argument("--label-similarity", choices=BACKENDS, default="exact")
    ap.add_argument("--batch-size", type=int, default=4096, help="KiB of input scored per batch (default 4096)")
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
    if paper_fast_available(cfg):  # compile (or load) the line reader and writer before the clock starts
        line = json.dumps({"response": "", "ground_truth": "<answer>(A) x</answer>", "image_size": [1, 1]})
        score_stream(io.BytesIO(line.encode() + b"\n"), io.BytesIO(), cfg)
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
