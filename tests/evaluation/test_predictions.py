"""Predictions written by another harness: keyed by each benchmark's own ids (CV-Bench ``idx``, HallusionBench's
VLMEvalKit ``index``, 3DSRBench ``qid``, STVQA ``image_id``) as well as the project's, and the ids that match
nothing listed."""

from __future__ import annotations

import json

import pytest

from evaluation.base import BenchmarkRow
from evaluation.predictions import (
    Prediction,
    PredictionError,
    match_predictions,
    read_predictions,
    unmatched_message,
)
from evaluation.registry import load_benchmark
from evaluation.report import evaluate_rows
from tests.evaluation import fixtures as fx

from .test_evaluation import CV_OUT, HB_OUT, _cli


def test_native_ids_score_like_the_projects(data_root, tmp_path):
    cv = load_benchmark("cv-bench", data_root=data_root)
    st = load_benchmark("stvqa", data_root=data_root)
    hb = load_benchmark("hallusionbench", fx.hallusionbench_tsv(tmp_path))
    assert [r.native_ids for r in cv[:2]] == [("0",), ("1",)] and [r.native_ids for r in st] == [("101",), ("102",)]
    idx = {r.id: r.native_ids[0] for r in cv}  # "2D-0" -> "0": CV-Bench's own idx
    preds = [Prediction(i, idx[k], v, "cv-bench") for i, (k, v) in enumerate(CV_OUT.items(), 1)]
    preds += [Prediction(20, "101", "<answer>(B) on</answer>")]  # STVQA image_id, no benchmark field
    preds += [Prediction(30 + i, r.native_ids[0], HB_OUT[r.id], "hallusionbench") for i, r in enumerate(hb)]
    matched = match_predictions(preds, cv + st + hb)
    assert not matched.unmatched and matched.by_native_id == len(preds)
    assert set(matched.outputs) == {r.key for r in cv} | {("stvqa", "101-relation")} | {r.key for r in hb}
    rows = cv + hb
    native = evaluate_rows(rows, [matched.outputs[r.key] for r in rows]).benchmarks
    project = evaluate_rows(rows, [{**CV_OUT, **HB_OUT}[r.id] for r in rows]).benchmarks
    assert native["cv-bench"].flat() == project["cv-bench"].flat() and native["cv-bench"].accuracy == 0.625
    assert native["hallusionbench"].flat() == project["hallusionbench"].flat()

    dsr = load_benchmark("3dsrbench", fx.dsr_tsv(tmp_path))  # VLMEvalKit qid beside the index
    matched = match_predictions([Prediction(1, "abcdefgh-flip", "B", "3dsrbench")], dsr)
    assert list(matched.outputs) == [("3dsrbench", "2")]


def test_project_id_first_ambiguity_and_duplicates():
    def row(bench, rid, *native):
        return BenchmarkRow(bench, rid, [], "q", ["a", "b"], "A", native_ids=tuple(native))

    rows = [row("cv-bench", "2D-0", "0"), row("cv-bench", "3D-0", "0"), row("mmvp", "0", "7")]
    # a project id wins over another row's dataset id; a dataset id in two rows is refused, naming both
    assert match_predictions([Prediction(1, "0", "x")], rows).outputs == {("mmvp", "0"): "x"}
    with pytest.raises(PredictionError, match=r"line 1: dataset id '0' names 2 rows \(cv-bench/2D-0, cv-bench/3D-0\)"):
        match_predictions([Prediction(1, "0", "x", "cv-bench")], rows)
    with pytest.raises(PredictionError, match="a second prediction for mmvp/0"):
        match_predictions([Prediction(1, "0", "x"), Prediction(2, "7", "y")], rows)


def test_unmatched_ids_are_listed(data_root, tmp_path):
    rows = load_benchmark("cv-bench-2d", data_root=data_root)
    preds = [Prediction(1, "0", "A", "cv-bench-2d"), Prediction(2, "99", "A", "cv-bench-2d"), Prediction(3, "x", "B")]
    matched = match_predictions(preds, rows)
    assert [p.id for p in matched.unmatched] == ["99", "x"] and list(matched.outputs) == [("cv-bench-2d", "2D-0")]
    message = unmatched_message(matched.unmatched, 3, rows, where="p.jsonl")
    assert message.startswith("p.jsonl: 2 of 3 prediction ids match no loaded row: line 2 id '99' (cv-bench-2d); ")
    assert "line 3 id 'x'." in message
    assert message.endswith("Ids accepted: cv-bench-2d: the project's id (e.g. '2D-0') or the dataset's idx/index")
    assert "\n" not in message

    lines = tmp_path / "p.jsonl"
    lines.write_text(json.dumps({"id": 3.0, "output": "B"}) + "\n\n" + json.dumps({"id": "4", "output": None}) + "\n")
    assert [(p.line, p.id, p.output) for p in read_predictions(lines)] == [(1, "3", "B"), (3, "4", "")]


def test_cli_accepts_cv_bench_idx_and_names_unmatched_ids(data_root, tmp_path):
    """The issue's case: a CV-Bench file keyed by ``idx`` was refused (``id '0' is in no loaded benchmark(s)``)."""
    rows = load_benchmark("cv-bench-2d", data_root=data_root)
    preds = tmp_path / "preds.jsonl"
    lines = [{"id": r.native_ids[0], "output": CV_OUT[r.id]} for r in rows] + [{"id": "1234", "output": "A"}]
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    args = ["--predictions", preds, "--benchmarks", "cv-bench-2d", "--data-root", data_root]
    refused = _cli(*args)
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and "1 of 5 prediction ids match no loaded row: line 5 id '1234'" in last
    assert "--ignore-unmatched" in last
    out = tmp_path / "r.json"
    res = _cli(*args, "--ignore-unmatched", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "line 5 id '1234'" in res.stderr and "4 of 5 predictions matched by the dataset's own id" in res.stderr
    report = json.loads(out.read_text())
    assert report["info"]["unmatched_ids"] == ["1234"] and report["info"]["matched_by_dataset_id"] == 4
    assert report["benchmarks"]["cv-bench-2d"]["accuracy"] == 0.75 and report["benchmarks"]["cv-bench-2d"]["n"] == 4
