"""The scoring CLI, ``python -m rewards.score``: fields kept, scores added, malformed lines flagged, summary logged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewards import similarity
from rewards.score import main, score_stream
from rewards.spatial import RewardConfig, compute_reward, perfect_response
from tests.rewards.helpers import GT, SIZE, respond

ROOT = Path(__file__).resolve().parents[2]
SCORES = ("format", "count", "accuracy", "spatial", "total")


def record(response, uid, **extra):
    return {"uid": uid, "response": response, "ground_truth": GT, "image_size": list(SIZE), **extra}


def run_stream(lines: list[str], cfg=None) -> tuple[list[dict], dict]:
    out = io.BytesIO()
    summary = score_stream(io.BytesIO("".join(lines).encode()), out, cfg or RewardConfig(), batch_size=2)
    return [json.loads(x) for x in out.getvalue().decode().splitlines()], summary


def test_scores_added_and_fields_kept():
    recs = [record(respond(), 1, meta={"a": [1, 2]}), record("no template", 2), record(respond(answer="B"), 3)]
    lines = [json.dumps(r) + "\n" for r in recs]
    lines[0] = lines[0].replace('{"uid": 1, ', '{ "uid" :1 ,   ')  # odd spacing survives: the text is kept
    out, summary = run_stream(lines)
    raw_out = io.BytesIO()
    score_stream(io.BytesIO(lines[0].encode()), raw_out, RewardConfig())
    assert raw_out.getvalue().startswith(lines[0].rstrip()[:-1].encode() + b', "format": 1.0, ')
    assert [o["uid"] for o in out] == [1, 2, 3]
    for rec, o in zip(recs, out):
        expect = compute_reward(rec["response"], GT, SIZE).as_dict()
        assert {k: o[k] for k in SCORES} == {k: expect[k] for k in SCORES}
        assert {k: o[k] for k in rec} == rec
    assert out[0]["total"] == pytest.approx(1.0, abs=1e-5) and "error" not in out[0]
    assert out[1]["error"]  # why the format failed
    assert summary["lines"] == 3 and summary["errors"] == 0
    assert summary["mean_total"] == pytest.approx(sum(o["total"] for o in out) / 3)


def test_malformed_lines_get_an_error_not_a_crash():
    lines = [
        "{not json\n",
        "\n",
        json.dumps({"uid": 5, "response": respond()}) + "\n",
        "[1, 2, 3]\n",
        json.dumps(record(respond(), 6, image_size=None)) + "\n",
        json.dumps(record(respond(), 8, total=-1, error="old")) + "\n",  # output keys present: rewritten
        json.dumps(record(respond(), 7)),  # last line without a newline
    ]
    out, summary = run_stream(lines)
    assert len(out) == 6  # the blank line is not a record
    assert "not valid JSON" in out[0]["error"] and out[0]["total"] == 0.0
    assert out[1]["uid"] == 5 and "missing key" in out[1]["error"] and "ground_truth" in out[1]["error"]
    assert "expected a JSON object" in out[2]["error"]
    assert out[3]["uid"] == 6 and "image_size" in out[3]["error"] and out[3]["total"] == 0.0
    assert out[4]["uid"] == 8 and out[4]["total"] == pytest.approx(1.0, abs=1e-5) and "error" not in out[4]
    assert out[5]["uid"] == 7 and out[5]["total"] == pytest.approx(1.0, abs=1e-5)
    assert summary["errors"] == 4 and summary["lines"] == 6


def test_presets_are_passed_through():
    line = json.dumps(record("<think>t</think><answer>(B) on the table</answer>", 1)) + "\n"
    out, _ = run_stream([line], RewardConfig(preset="vanilla"))
    assert out[0]["total"] == 1.0


def test_main_in_process(tmp_path, capsysbinary, caplog):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(record(perfect_response(GT), 1)) + "\n" + json.dumps(record("x", 2)) + "\n")
    caplog.set_level("INFO")
    assert main([str(src), "--preset", "strict", "--label-similarity", "exact"]) == 0
    out = [json.loads(x) for x in capsysbinary.readouterr().out.decode().splitlines()]
    assert [o["uid"] for o in out] == [1, 2] and out[0]["total"] == pytest.approx(1.0, abs=1e-5)
    assert "lines=2" in caplog.text and "us_per_response=" in caplog.text and "errors=0" in caplog.text


def test_main_reports_a_missing_backend(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "spacy", None)
    monkeypatch.setattr(similarity, "_BACKENDS", {})
    src = tmp_path / "in.jsonl"
    src.write_text("")
    assert main([str(src), "--label-similarity", "spacy"]) == 2
    assert "en_core_web_md" in caplog.text


def test_cli_end_to_end_file_and_stdin(tmp_path):
    src = tmp_path / "in.jsonl"
    recs = [record(perfect_response(GT), i) for i in range(3)] + [record(respond(answer="(A) x"), 3)]
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cmd = [sys.executable, "-m", "rewards.score", "--preset", "spatialthinker", "--label-similarity", "exact"]
    by_file = subprocess.run([*cmd, str(src)], cwd=ROOT, capture_output=True, check=True)
    by_stdin = subprocess.run([*cmd, "-"], cwd=ROOT, input=src.read_bytes(), capture_output=True, check=True)
    assert by_file.stdout == by_stdin.stdout
    out = [json.loads(x) for x in by_file.stdout.decode().splitlines()]
    assert [o["uid"] for o in out] == [0, 1, 2, 3]
    assert out[3]["accuracy"] == 0.0 and out[3]["total"] == pytest.approx(0.3)
    assert b"lines=4" in by_file.stderr and b"mean_total=" in by_file.stderr


def test_cli_missing_file(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "rewards.score", str(tmp_path / "nope.jsonl")],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert p.returncode == 2 and b"cannot read" in p.stderr


LINE_VARIANTS = [
    lambda r: r,
    lambda r: {"meta": {"a": [1, 2.5e-3, None, True, {"b": "x\\y\u00e9"}]}, **r},  # nested fields kept
    lambda r: {**r, "uid": 12345678901234567890123},
    lambda r: {k: r[k] for k in ("image_size", "ground_truth", "response")},  # another key order
    lambda r: {**r, "image_size": [float(r["image_size"][0]), r["image_size"][1]]},
    lambda r: {**r, "image_size": [0, 5]},
    lambda r: {**r, "image_size": [-3, 5]},
    lambda r: {**r, "image_size": "200x150"},
    lambda r: {**r, "image_size": [200, 150, 3]},
    lambda r: {**r, "response": r["response"].replace("cup", "caf\u00e9")},
    lambda r: {**r, "response": r["response"].replace("\n", "\t")},
    lambda r: {**r, "response": None},
    lambda r: {**r, "ground_truth": r["ground_truth"].replace("table", "t\u00e4ble")},
    lambda r: {**r, "ground_truth": "no answer here"},
    lambda r: {**r, "total": 0.5},
    lambda r: {k: v for k, v in r.items() if k != "ground_truth"},
    lambda r: {**r, "note": float("nan")},
]


def _line_text(rng, rec: dict) -> str:
    text = json.dumps(rec, ensure_ascii=rng.random() < 0.5)
    choice = rng.random()
    if choice < 0.1:
        text = text.replace('"response": "', '"response":"')
    elif choice < 0.2:
        text = text.replace("<scene>", "\\u003cscene>", 1)  # an ASCII \u escape decodes to the same text
    elif choice < 0.25:
        text = text + " "
    elif choice < 0.3:
        text = text.replace('"image_size": [', '"image_size" : [ ')
    elif choice < 0.33:
        text = text[: rng.randrange(len(text))]  # cut short: not JSON
    elif choice < 0.36:
        text = text.replace('"response"', '"respons\\u0065"')  # an escaped key spelling a known one
    elif choice < 0.39:
        text = text.replace("}", "}\r", 1) if rng.random() < 0.5 else text + "\r"
    elif choice < 0.44:  # a repeated key: JSON keeps the last one
        key = rng.choice(['"response": "<answer>x</answer>", ', '"ground_truth": "<answer>(B) x</answer>", '])
        text = text.replace('"image_size": [', key + '"image_size": [', 1)
    return text


def test_fast_cli_path_matches_the_python_path_byte_for_byte():
    import random

    from rewards.score import _score_raw_lines

    rng = random.Random(0)
    gts = [GT, GT.replace("(B)", "(C)"), GT.replace("10, 10", "11, 12")]
    lines = []
    for i in range(600):
        gt = rng.choice(gts)
        response = (
            perfect_response(gt) if rng.random() < 0.7 else respond(answer=rng.choice(["(B) on the table", "x"]))
        )
        if rng.random() < 0.2:
            response = response.replace('"bbox"', rng.choice(['"box"', '"bbox"']), 1).replace(
                "50", rng.choice(["5", "50"])
            )
        rec = rng.choice(LINE_VARIANTS)({"uid": i, "response": response, "ground_truth": gt, "image_size": list(SIZE)})
        lines.append(_line_text(rng, rec) + "\n")
        if rng.random() < 0.03:
            lines.append(rng.choice(["\n", "  \n", "[]\n", "{}\n", '{"response": "x", "response": "y"}\n']))
    data = "".join(lines).encode()
    for block in (1, 8, 4096):  # KiB: blocks cut everywhere, and one block
        fast_out = io.BytesIO()
        summary = score_stream(io.BytesIO(data), fast_out, RewardConfig(), batch_size=block)
        outputs, errors, total = _score_raw_lines(list(enumerate(io.BytesIO(data).readlines(), 1)), RewardConfig())
        expected = b"".join(x for x in outputs if x is not None)
        got = fast_out.getvalue()
        for e_line, g_line in zip(expected.splitlines(), got.splitlines()):
            assert e_line == g_line
        assert got == expected
        assert summary["errors"] == errors and summary["lines"] == sum(x is not None for x in outputs)
        assert summary["mean_total"] == pytest.approx(total / summary["lines"], rel=1e-12)
        # both paths ran: the common lines (about a fifth here: most variants are other shapes or errors) were read
        # and scored by the Numba reader, the rest by the Python path
        assert 0.15 * summary["lines"] < summary["fast"] < 0.9 * summary["lines"], summary


def test_fast_cli_path_writes_tiny_scores_as_repr_does():
    from rewards.score import _score_raw_lines

    gt = '<scene>{"objects": [{"id": "cup.1", "bbox": [0, 0, 1, 1]}]}</scene>\n<answer>(A) x</answer>'
    response = perfect_response(gt).replace("[0, 0, 1, 1]", "[999999, 999999, 1000000, 1000000]")
    line = json.dumps({"response": response, "ground_truth": gt, "image_size": [1000000, 1000000]}) + "\n"
    out = io.BytesIO()
    score_stream(io.BytesIO(line.encode()), out, RewardConfig())
    expected, _, _ = _score_raw_lines([(1, line.encode())], RewardConfig())
    assert out.getvalue() == expected[0]
    spatial = json.loads(out.getvalue())["spatial"]
    assert 0 < spatial < 1e-4 and f'"spatial": {spatial!r}'.encode() in out.getvalue()
