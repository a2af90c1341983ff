"""Benchmark loading, prompts, answer extraction (standard and paper-faithful), official aggregates, run_policy and
the evaluate CLI, on tiny generated fixtures in each benchmark's published format (tests/evaluation/fixtures.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, Features, Sequence, Value
from datasets import Image as HFImage
from mlflow.tracking import MlflowClient
from PIL import Image

from actors.records import PromptGroup, Response
from evaluation.answers import (
    answer_span,
    extract_choice,
    extract_yes_no,
    letter_of,
    match_open,
    paper_answer_span,
    paper_score,
)
from evaluation.base import BenchmarkError, BenchmarkRow
from evaluation.registry import BENCHMARKS, load_benchmark
from evaluation.report import evaluate_rows, log_mlflow, score_row
from evaluation.runner import OPEN_ANSWER_HINT, build_requests, run_policy
from rewards.prompt import PromptBuilder
from rewards.spatial import perfect_response
from tests.evaluation import fixtures as fx

from ..conftest import demo

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------------------------------
# loading

EXPECTED = {
    # name: (rows, answers in order, answer types present)
    "stvqa": (2, ["B", "A"], {"mcq"}),
    "cv-bench": (8, ["C", "A", "B", "B", "A", "B", "A", "B"], {"mcq"}),
    "cv-bench-2d": (4, ["C", "A", "B", "B"], {"mcq"}),
    "cv-bench-3d": (4, ["A", "B", "A", "B"], {"mcq"}),
    "blink": (5, ["B", "A", "A", "A", "B"], {"mcq"}),
    "blink-spatial": (3, ["B", "A", "A"], {"mcq"}),
    "blink-depth": (2, ["A", "B"], {"mcq"}),
    "3dsrbench": (3, ["B", "A", "D"], {"mcq"}),
    "mmvp": (4, ["A", "B", "B", "A"], {"mcq"}),
    "spatialreasoner": (2, ["B", "A"], {"mcq"}),
    "spatialbench": (3, ["Yes", "3", "left"], {"yesno", "open"}),
    "mmstar": (4, ["A", "B", "C", "D"], {"mcq"}),
    "vstar": (2, ["A", "B"], {"mcq"}),
    "realworldqa": (2, ["B", "2"], {"mcq", "open"}),
    "mme-realworld-lite": (4, ["A", "B", "C", "E"], {"mcq"}),
    "robospatial": (2, ["Yes", "No"], {"yesno"}),
    "hallusionbench": (6, ["Yes", "No", "Yes", "Yes", "Yes", "No"], {"yesno"}),
}


def test_registry_covers_all_benchmarks():
    assert set(EXPECTED) == set(BENCHMARKS) == set(fx.WRITERS)
    for b in BENCHMARKS.values():
        assert b.hf_ids and b.split and b.mapper is not None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_each_benchmark(name, data_root):
    n, answers, types = EXPECTED[name]
    rows = load_benchmark(name, data_root=data_root)
    assert len(rows) == n
    assert [r.answer for r in rows] == answers
    assert {r.answer_type for r in rows} == types
    assert len({r.id for r in rows}) == n
    for r in rows:
        assert r.benchmark == name
        assert r.images and all(isinstance(im, Image.Image) and im.mode == "RGB" for im in r.images)
        assert r.image_size == r.images[0].size
        assert r.question and "(A)" not in r.question and "Options" not in r.question
        if r.answer_type == "mcq":
            assert r.options and r.answer in "ABCDEFGHIJ"[: len(r.options)]
        if r.answer_type == "yesno":
            assert [o.lower() for o in r.options] == ["yes", "no"]
    assert load_benchmark(name, data_root=data_root, limit=1)[0].id == rows[0].id


def test_loaders_fields(data_root):
    cv = load_benchmark("cv-bench", data_root=data_root)
    assert cv[0].question == "How many chairs are in the image?"
    assert cv[0].options == ["3", "2", "1", "0"] and cv[0].paper_answer == "(C)" and cv[0].paper_branch == "mcq"
    assert [r.group_keys["source"] for r in cv] == ["ADE20K"] * 3 + ["COCO"] + ["Omni3D"] * 4
    assert cv[0].image_size == (40, 30) and cv[0].category == "Count"

    star = load_benchmark("mmstar", data_root=data_root)
    assert star[0].options == ["red, dark", "blue", "green", "white"]  # commas inside an option
    assert star[0].question == "What colour is the car?" and star[0].subcategory == "color"

    rw = load_benchmark("realworldqa", data_root=data_root)
    assert rw[0].options == ["left", "right", "straight"] and rw[0].question == "Which direction is the road turning?"
    assert rw[1].options is None and rw[1].question == "How many cars are in front of us?"

    mme = load_benchmark("mme-realworld-lite", data_root=data_root)
    assert mme[0].options[0] == "option a0" and mme[0].group_keys["dimension"] == "Perception"
    assert mme[3].category == "OCR with Complex Context"

    vs = load_benchmark("vstar", data_root=data_root)
    assert vs[0].image_size == (80, 60) and vs[0].options == ["red", "blue", "green", "white"]
    assert "Answer with" not in vs[0].question

    mmvp = load_benchmark("mmvp", data_root=data_root)
    assert [r.group_keys["pair"] for r in mmvp] == ["0", "0", "1", "1"]
    assert mmvp[0].options == ["Open", "Closed"] and mmvp[0].paper_answer == "(a)"

    sr = load_benchmark("spatialreasoner", data_root=data_root)
    assert sr[0].paper_choices == ["A is closer", "B is closer"]  # parsed from the stringified list

    hb = load_benchmark("hallusionbench", data_root=data_root)
    assert hb[0].group_keys == {
        "category": "VD",
        "subcategory": "illusion",
        "set_id": "0",
        "figure_id": "0",
        "question_id": "0",
    }
    assert hb[0].paper_answer == "1" and hb[0].paper_branch == "hallusion"

    st = load_benchmark("stvqa", data_root=data_root)
    assert st[0].image_size == (200, 150) and st[0].ground_truth.endswith("<answer>(B) on</answer>")
    assert st[0].question == "Where is the cup relative to the table?" and st[0].category == "relation"


def test_other_published_layouts(tmp_path):
    raw = load_benchmark("cv-bench-2d", fx.cv_bench_jsonl(tmp_path))  # jsonl + relative img/ paths
    assert [r.answer for r in raw] == ["C", "A", "B", "B"] and raw[2].image_size == (50, 22)

    tsv = load_benchmark("3dsrbench", fx.dsr_tsv(tmp_path))  # VLMEvalKit TSV: base64 images, A/B columns
    assert [r.group_keys["qid"] for r in tsv][:2] == ["abcdefgh", "abcdefgh-1"]
    assert tsv[0].options == ["yes", "no"] and tsv[0].category == "location" and tsv[0].image_size == (28, 20)

    hb = load_benchmark("hallusionbench", fx.hallusionbench_tsv(tmp_path))  # ids from the index field
    assert [r.answer for r in hb] == EXPECTED["hallusionbench"][1]
    assert hb[5].group_keys["figure_id"] == "1" and hb[5].group_keys["set_id"] == "1"

    st = load_benchmark("stvqa", fx.stvqa(tmp_path))
    assert [r.answer for r in st] == ["B", "A"] and st[1].ground_truth.endswith("<answer>(A) dog</answer>")


def test_saved_dataset_and_single_file(tmp_path):
    feats = Features(
        {
            "image": HFImage(),
            "question": Value("string"),
            "choices": Sequence(Value("string")),
            "answer": Value("string"),
            "task": Value("string"),
            "source": Value("string"),
            "type": Value("string"),
            "idx": Value("int64"),
        }
    )
    ds = Dataset.from_dict(
        {
            "image": [Image.new("RGB", (33, 22))],
            "question": ["How many?"],
            "choices": [["1", "2"]],
            "answer": ["(B)"],
            "task": ["Count"],
            "source": ["COCO"],
            "type": ["2D"],
            "idx": [9],
        },
        features=feats,
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    rows = load_benchmark("cv-bench-2d", tmp_path / "saved")
    assert rows[0].answer == "B" and rows[0].image_size == (33, 22) and rows[0].id == "2D-9"
    one = load_benchmark("cv-bench-3d", fx.cv_bench(tmp_path) / "test_3d.parquet")
    assert len(one) == 4


def test_bad_input_messages(tmp_path, data_root):
    with pytest.raises(BenchmarkError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", data_root=data_root)
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_benchmark("cv-bench", tmp_path / "missing")
    with pytest.raises(BenchmarkError, match="no local copy"):
        load_benchmark("mmstar", data_root=tmp_path)
    bad = fx.write_parquet(tmp_path / "cv" / "test_2d.parquet", [{"question": "q", "choices": ["a", "b"]}])
    with pytest.raises(BenchmarkError, match=r"test_2d\.parquet row 0: missing column 'answer'"):
        load_benchmark("cv-bench-2d", bad)
    bad = fx.write_parquet(
        tmp_path / "cv2" / "test_2d.parquet",
        [{"question": "q", "choices": ["a", "b"], "answer": "(C)", "image": fx.hf_image()}],
    )
    with pytest.raises(BenchmarkError, match=r"column 'answer' value '\(C\)' is not one of the 2 options"):
        load_benchmark("cv-bench-2d", bad)
    bad = fx.write_parquet(
        tmp_path / "cv3" / "test_2d.parquet",
        [{"question": "q", "choices": ["a", "b"], "answer": "(A)", "image": {"bytes": b"not an image", "path": None}}],
    )
    with pytest.raises(BenchmarkError, match="column 'image' is not a readable image"):
        load_benchmark("cv-bench-2d", bad)
    hidden = fx.write_parquet(
        tmp_path / "bl" / "Spatial_Relation" / "test-00000-of-00001.parquet",
        [{"idx": "t", "question": "q", "image_1": fx.hf_image(), "choices": ["yes", "no"], "answer": "hidden"}],
    )
    with pytest.raises(BenchmarkError, match="hidden"):
        load_benchmark("blink-spatial", hidden)
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(BenchmarkError, match="junk.parquet: not a readable parquet file"):
        load_benchmark("mmstar", tmp_path / "junk.parquet")
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(
            "vstar",
            fx.write_jsonl(
                tmp_path / "v.jsonl", [{"text": "q\n(A) a\n(B) b", "label": "A", "image": "missing/pic.jpg"}]
            ),
        )
    assert "\n" not in str(info.value) and "missing/pic.jpg" in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# prompts


def test_build_requests_uses_training_prompt(data_root):
    builder = PromptBuilder(demo("prompt"))  # the CPU demo's small image range
    rows = load_benchmark("cv-bench", data_root=data_root)
    reqs = build_requests(rows, builder)
    text = reqs[0].messages[0]["content"][1]["text"]
    assert reqs[0].messages == builder.messages("How many chairs are in the image?", ["3", "2", "1", "0"], (40, 30))
    assert "\n(A) 3\n(B) 2\n(C) 1\n(D) 0" in text and "Image size: (40 x 30)" in text
    assert "Select from the following choices" not in text and text.count("How many chairs") == 1
    assert reqs[0].messages[0]["content"][0] == {"type": "image"}
    assert reqs[0].sample.image_size == (40, 30) and reqs[0].sample.ground_truth == "(C) 1"
    assert reqs[0].uid == "eval-cv-bench-2D-0" and [r.index for r in reqs] == list(range(8))

    big = BenchmarkRow("x", "1", [Image.new("RGB", (300, 200))], "Where?", ["left", "right"], "A")
    req = build_requests([big], builder)[0]
    assert "Image size: (300 x 200)" in req.messages[0]["content"][1]["text"]  # the ORIGINAL size
    assert req.images[0].size != (300, 200) and req.images[0].width * req.images[0].height <= 112 * 112

    two = BenchmarkRow("x", "2", [Image.new("RGB", (20, 10)), Image.new("RGB", (8, 8))], "Same?", ["yes", "no"], "A")
    content = build_requests([two], builder)[0].messages[0]["content"]
    assert [c["type"] for c in content] == ["image", "image", "text"] and "Image size: (20 x 10)" in content[2]["text"]

    open_row = load_benchmark("realworldqa", data_root=data_root)[1]
    text = build_requests([open_row], builder)[0].messages[0]["content"][1]["text"]
    assert OPEN_ANSWER_HINT in text and "Image size: (64 x 32)" in text

    yn = load_benchmark("hallusionbench", data_root=data_root)[0]
    assert "(A) Yes\n(B) No" in build_requests([yn], builder)[0].messages[0]["content"][1]["text"]


# ---------------------------------------------------------------------------------------------------------------------
# answer extraction

OPTS = ["left", "right", "behind"]


@pytest.mark.parametrize(
    "output, standard, paper",
    [
        ("<answer>(B) right</answer>", "B", "B"),
        ("<think>x</think><answer>(B)</answer>", "B", "A"),  # paper: "(B)" alone -> "A"
        ("<answer>B</answer>", "B", "A"),  # paper: bare letter -> "A"
        ("B", "B", "A"),
        ("B.", "B", "A"),
        ("B) right", "B", "A"),  # the script's second pattern never strips "B)"
        ("<answer>right</answer>", "B", "B"),
        ("<answer>Right</answer>", "B", "B"),
        ("<answer>(B) right side</answer>", "B", "A"),  # paper: text must equal an option exactly
        ("<answer>(b)</answer>", "B", "A"),
        ("The answer is C.", "C", "A"),
        ("Answer: (C) behind", "C", "C"),  # paper: text after "Answer:"
        ("<answer>(A) left</answer> ... <answer>(C) behind</answer>", "C", "C"),  # the last answer block
        ("<answer>A dog is behind the car</answer>", "C", "A"),  # no "first capital" rule in standard mode
        ("<answer>I think (C)</answer>", "C", "A"),
        ("<answer>It could be left or right</answer>", None, "A"),
        ("<answer>(E) none</answer>", None, "A"),
        ("<answer>", None, "A"),
        ("", None, "Failed to extract."),
    ],
)
def test_letter_extraction_table(output, standard, paper):
    assert extract_choice(output, OPTS) == standard
    assert paper_score(output, "(B)", branch="mcq", choices=OPTS).prediction == paper


def test_letter_extraction_forms_map_to_b():
    for form in ("(B)", "B", "B.", "(B) right", "right", "B:", "[B]", "**B**", "Option B", "answer: B"):
        assert extract_choice(form, OPTS) == "B", form
        assert extract_choice(f"<observe>o</observe><answer>{form}</answer>", OPTS) == "B", form
    assert extract_choice("B is closer", ["A is closer", "B is closer"]) == "B"
    assert extract_choice("A is closer", ["A is closer", "B is closer"]) == "A"
    assert extract_choice("on the left", ["left", "left of the car"]) == "A"
    assert extract_choice("C", 2) is None and extract_choice("(C)", 3) == "C"
    assert letter_of("(c)", 3) == "C" and letter_of("right", OPTS) == "B" and letter_of("(D)", OPTS) is None


def test_answer_span_and_paper_span():
    assert answer_span("<think>a</think><answer> (A) x </answer>") == "(A) x"
    assert answer_span("no tags") == "no tags" and answer_span("<answer>cut off") == "cut off"
    assert paper_answer_span("reasoning Answer: (B) text") == "(B) text"
    assert paper_answer_span("(B) x</answer> tail </answer>") == "(B) x"
    assert paper_answer_span("<answer>open only") == "open only"
    assert paper_answer_span("") is None and paper_answer_span("Answer:") is None


def test_paper_scoring_quirks():
    assert paper_score("B", "(B)", branch="mcq", choices=OPTS).correct is False  # bare B scores as A
    assert paper_score("B", "(A)", branch="mcq", choices=OPTS).correct is True  # ... which is right when GT is A
    assert paper_score("<answer>(B) right</answer>", "(B)", branch="mcq", choices=OPTS).correct is True
    # a multi-character ground truth is cut to its lower-cased first letter and never matches a letter
    s = paper_score("<answer>(A) yes</answer>", "Yes", branch="mcq", choices=["yes", "no"])
    assert (s.ground_truth, s.prediction, s.correct) == ("y", "A", False)
    # HallusionBench: "1" -> A, choices Yes/No
    assert paper_score("Yes", "1", branch="hallusion").correct is True
    assert paper_score("No", "0", branch="hallusion").correct is True
    assert paper_score("<answer>(B)</answer>", "0", branch="hallusion").prediction == "A"
    # generic (MMVP) and strip (RealWorldQA, SpatialBench) branches: equality, grade_answer or extract_answer
    assert paper_score("<answer>(a) Open</answer>", "(a)", branch="generic").correct is False
    assert paper_score("<answer>(a) Open</answer>", "a", branch="generic").correct is True
    assert paper_score("<answer>(B) right</answer>", "B", branch="strip").correct is True
    assert paper_score("<answer>3.0</answer>", "3", branch="strip").correct is True  # grade_answer
    assert paper_score("<answer>three</answer>", "3", branch="strip").correct is False


def test_yes_no_and_open():
    assert extract_yes_no("<answer>(A) Yes</answer>") == "Yes"
    assert extract_yes_no("No, it is not.") == "No"
    assert extract_yes_no("yes and no") is None
    yn = BenchmarkRow("x", "1", [], "q?", ["Yes", "No"], "No", "yesno")
    assert score_row(yn, "<answer>(B)</answer>").correct and score_row(yn, "<answer>No.</answer>").correct
    assert not score_row(yn, "<answer>(A) Yes</answer>").correct and score_row(yn, "maybe").prediction is None
    assert match_open("<answer>3</answer>", "3") and match_open("three", "3") and match_open("There are 3.", "3")
    assert not match_open("3 or 4", "3") and match_open("Downhill.", "downhill") and not match_open("up", "down")
    assert match_open("<answer>Yes, there is</answer>", "yes")


# ---------------------------------------------------------------------------------------------------------------------
# aggregates (hand-computed)

CV_OUT = {
    "2D-0": "<think>three chairs</think><answer>(C) 1</answer>",
    "2D-1": "<answer>A</answer>",
    "2D-2": "<answer>(B)</answer>",
    "2D-3": "<answer>(A) 2</answer>",
    "3D-4": "<answer>lamp</answer>",
    "3D-5": "The answer is B.",
    "3D-6": "<answer>(B) fork</answer>",
    "3D-7": "",
}
HB_OUT = {
    "VD_illusion_0_0_0": "<answer>(A) Yes</answer>",
    "VD_illusion_0_1_0": "<answer>No</answer>",
    "VD_illusion_0_0_1": "<answer>(A)</answer>",
    "VD_illusion_0_1_1": "<answer>(B) No</answer>",
    "VS_chart_1_0_0": "<answer>No</answer>",
    "VS_chart_1_1_0": "<answer>B</answer>",
}
MMVP_OUT = {
    "1": "<answer>(a) Open</answer>",
    "2": "<answer>Closed</answer>",
    "3": "<answer>(B) Right</answer>",
    "4": "<answer>(B) Right</answer>",
}
BLINK_OUT = {
    "val_Spatial_Relation_1": "<answer>(B) no</answer>",
    "val_Spatial_Relation_2": "<answer>yes</answer>",
    "val_Spatial_Relation_3": "<answer>(A) yes</answer>",
    "val_Relative_Depth_1": "<answer>A is closer</answer>",
    "val_Relative_Depth_2": "<answer>(A) A is closer</answer>",
}


def test_cv_bench_official_formula(data_root):
    rows = load_benchmark("cv-bench", data_root=data_root)
    r = evaluate_rows(rows, [CV_OUT[x.id] for x in rows]).benchmarks["cv-bench"]
    assert (r.n, r.correct, r.accuracy) == (8, 5, 0.625)
    assert r.metrics["source/ADE20K"] == 1.0 and r.metrics["source/COCO"] == 0.0 and r.metrics["source/Omni3D"] == 0.5
    assert r.metrics["official"] == pytest.approx(0.5 * ((1.0 + 0.0) / 2 + 0.5))  # 0.5, unlike plain 0.625
    assert r.tasks["Count"]["accuracy"] == pytest.approx(2 / 3) and r.tasks["Distance"]["accuracy"] == 0.0
    assert r.extraction_failures == 1 and r.stderr == pytest.approx(math.sqrt(0.625 * 0.375 / 8))
    two = evaluate_rows(rows[:4], [CV_OUT[x.id] for x in rows[:4]])
    assert two.benchmarks["cv-bench"].metrics["acc_2d"] == 0.5


def test_cv_bench_paper_scoring(data_root):
    rows = load_benchmark("cv-bench", data_root=data_root)
    report = evaluate_rows(rows, {x.id: CV_OUT[x.id] for x in rows}, paper_scoring=True)
    r = report.benchmarks["cv-bench"]
    assert report.mode == "paper" and r.scoring == "paper"
    assert [s.prediction for s in report.samples] == ["C", "A", "A", "A", "A", "A", "B", "Failed to extract."]
    assert (r.correct, r.accuracy, r.extraction_failures) == (3, 0.375, 1)
    assert r.metrics["paper_task/Count"] == 2 / 8  # hard-coded 788 -> min(788, n=8)


def test_hallusionbench_metrics(data_root):
    rows = load_benchmark("hallusionbench", data_root=data_root)
    r = evaluate_rows(rows, [HB_OUT[x.id] for x in rows]).benchmarks["hallusionbench"]
    assert r.metrics["aAcc"] == pytest.approx(4 / 6) and r.accuracy == pytest.approx(4 / 6)
    assert r.metrics["fAcc"] == pytest.approx(2 / 3)  # VD_0_fig0 ok, VD_0_fig1 not, VS_1_fig1 ok (VS fig 0 skipped)
    assert r.metrics["qAcc"] == pytest.approx(1 / 3)  # VD_0_q0 ok, VD_0_q1 not, VS_1_q0 not
    paper = evaluate_rows(rows, [HB_OUT[x.id] for x in rows], paper_scoring=True).benchmarks["hallusionbench"]
    assert paper.correct == 3  # "(A)" -> A (lucky), "B" -> A (wrong)


def test_mmvp_blink_mme_mmstar_3dsr(data_root, tmp_path):
    rows = load_benchmark("mmvp", data_root=data_root)
    r = evaluate_rows(rows, [MMVP_OUT[x.id] for x in rows]).benchmarks["mmvp"]
    assert r.accuracy == 0.75 and r.metrics["pair_accuracy"] == 0.5 and r.metrics["pairs"] == 2

    rows = load_benchmark("blink", data_root=data_root)
    r = evaluate_rows(rows, [BLINK_OUT[x.id] for x in rows]).benchmarks["blink"]
    assert r.accuracy == 0.8 and r.metrics["task_mean"] == 0.75
    assert r.tasks == {
        "Relative_Depth": {"n": 2, "correct": 1, "accuracy": 0.5},
        "Spatial_Relation": {"n": 3, "correct": 3, "accuracy": 1.0},
    }

    rows = load_benchmark("mme-realworld-lite", data_root=data_root)
    r = evaluate_rows(
        rows,
        ["<answer>(A)</answer>", "<answer>(C)</answer>", "<answer>(C)</answer>", "<answer>(E) option e3</answer>"],
    ).benchmarks["mme-realworld-lite"]
    assert r.metrics["perception"] == 0.5 and r.metrics["reasoning"] == 1.0 and r.accuracy == 0.75

    rows = load_benchmark("mmstar", data_root=data_root)
    r = evaluate_rows(rows, ["(A) red, dark", "(A)", "C", "(D) 4"]).benchmarks["mmstar"]
    assert r.tasks["coarse perception"]["accuracy"] == pytest.approx(2 / 3) and r.tasks["math"]["accuracy"] == 1.0
    assert r.metrics["l2/color"] == 0.5 and r.metrics["l2_macro"] == pytest.approx((0.5 + 1 + 1) / 3)

    rows = load_benchmark("3dsrbench", fx.dsr_tsv(tmp_path))  # qids x, x-1, x-flip, x-flip-1; answers A B A B
    r = evaluate_rows(rows, ["A", "B", "A", "A"]).benchmarks["3dsrbench"]
    assert r.accuracy == 0.75 and r.metrics["circular"] == 0.5 and r.metrics["flip"] == 1.0
    assert r.metrics["flip_circular"] == 0.0


def test_stvqa_reward_components(data_root):
    rows = load_benchmark("stvqa", data_root=data_root)
    report = evaluate_rows(rows, [perfect_response(rows[0].ground_truth), "<answer>(B) cat</answer>"])
    r = report.benchmarks["stvqa"]
    assert r.accuracy == 0.5
    assert r.metrics["reward_format"] == 0.5 and r.metrics["reward_accuracy"] == 0.5
    assert r.metrics["reward_total"] == pytest.approx(0.5, abs=1e-5)
    assert r.metrics["reward_spatial"] == pytest.approx(0.5, abs=1e-5)
    assert report.samples[1].reward["format"] == 0.0


def test_report_table_json_and_mlflow(data_root, tmp_path):
    rows = load_benchmark("cv-bench", data_root=data_root) + load_benchmark("hallusionbench", data_root=data_root)
    outs = {**{("cv-bench", k): v for k, v in CV_OUT.items()}, **{("hallusionbench", k): v for k, v in HB_OUT.items()}}
    report = evaluate_rows(rows, outs)
    table = report.table()
    assert "cv-bench" in table and "official=50.00" in table and "qAcc=33.33" in table and "fAcc=66.67" in table
    path = report.write(tmp_path / "r" / "results.json")
    data = json.loads(path.read_text())
    assert data["benchmarks"]["cv-bench"]["metrics"]["official"] == 0.5
    assert len(path.with_suffix(".samples.jsonl").read_text().splitlines()) == 14
    uri = (tmp_path / "mlruns").as_uri()
    run_id = log_mlflow(report, uri, experiment="eval-test", step=3)
    metrics = MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics
    assert metrics["eval/cv-bench/official"] == 0.5 and metrics["eval/hallusionbench/qAcc"] == pytest.approx(1 / 3)
    assert metrics["eval/cv-bench/task/Count"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------------------------------
# run_policy with a stand-in engine


class FakeEngine:
    """Answers every prompt with its row's correct option, except CV-Bench row 3D-7; records the calls."""

    name = "fake"

    def __init__(self):
        self.calls = []

    def generate(self, requests, n, *, temperature=None, max_new_tokens=None):
        self.calls.append((len(requests), n, temperature, max_new_tokens))
        groups = []
        for r in requests:
            text = "" if r.uid.endswith("3D-7") else f"<answer>{r.sample.ground_truth}</answer>"
            groups.append(PromptGroup(r.uid, r.index, None, [Response([1], text, "stop")] * n, r.sample))
        return groups


def test_run_policy_greedy_with_engine(data_root):
    engine = FakeEngine()
    report = run_policy(
        "unused", ["cv-bench", "blink-depth"], engine=engine, data_root=data_root, batch_size=3, max_new_tokens=32
    )
    assert engine.calls[0] == (3, 1, 0.0, 32) and sum(c[0] for c in engine.calls) == 10
    assert report.benchmarks["cv-bench"].correct == 7 and report.benchmarks["blink-depth"].accuracy == 1.0
    assert report.info["engine"] == "fake" and report.info["temperature"] == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# CLI: --predictions


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ALLOW_FILE_STORE": "true"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), *map(str, args)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_cli_predictions(data_root, tmp_path):
    preds = tmp_path / "preds.jsonl"
    lines = [{"benchmark": "cv-bench", "id": k, "output": v} for k, v in CV_OUT.items()]
    lines += [{"benchmark": "hallusionbench", "id": k, "output": v} for k, v in HB_OUT.items()]
    lines += [{"id": k, "output": v} for k, v in MMVP_OUT.items()]  # no benchmark field: matched by id
    lines += [{"benchmark": "blink", "id": k, "output": v} for k, v in BLINK_OUT.items()]
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "results.json"
    res = _cli(
        "--predictions",
        preds,
        "--benchmarks",
        "cv-bench,hallusionbench,mmvp,blink",
        "--data-root",
        data_root,
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr
    assert "official=50.00" in res.stdout and "pair_accuracy=50.00" in res.stdout
    b = json.loads(out.read_text())["benchmarks"]
    assert b["cv-bench"]["accuracy"] == 0.625 and b["cv-bench"]["metrics"]["official"] == 0.5
    assert b["hallusionbench"]["metrics"]["qAcc"] == pytest.approx(1 / 3)
    assert b["hallusionbench"]["metrics"]["fAcc"] == pytest.approx(2 / 3)
    assert b["mmvp"]["accuracy"] == 0.75 and b["mmvp"]["metrics"]["pair_accuracy"] == 0.5
    assert b["blink"]["accuracy"] == 0.8 and b["blink"]["metrics"]["task_mean"] == 0.75

    paper = _cli(
        "--predictions",
        preds,
        "--benchmarks",
        "cv-bench,hallusionbench,mmvp,blink",
        "--data-root",
        data_root,
        "--paper-scoring",
        "--out",
        tmp_path / "paper.json",
        "-q",
    )
    assert paper.returncode == 0, paper.stderr
    pb = json.loads((tmp_path / "paper.json").read_text())
    assert pb["mode"] == "paper" and pb["benchmarks"]["cv-bench"]["accuracy"] == 0.375
    assert pb["benchmarks"]["hallusionbench"]["correct"] == 3


def test_cli_bad_input_exits_2(data_root, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"benchmark": "cv-bench", "id": "2D-99", "output": "A"}) + "\n")
    cases = [
        (["--predictions", preds, "--benchmarks", "cv-bench", "--data-root", data_root], "2D-99"),
        (["--predictions", preds, "--benchmarks", "nope", "--data-root", data_root], "unknown benchmark 'nope'"),
        (["--predictions", tmp_path / "none.jsonl", "--benchmarks", "cv-bench"], "does not exist"),
        (["--benchmarks", "cv-bench"], "give --model"),
        (["--predictions", preds, "--source", "cv-bench", "--benchmarks", "cv-bench"], "NAME=PATH"),
        (["--predictions", preds, "--benchmarks", "cv-bench", "--source", f"cv-bench={tmp_path}/x"], "does not exist"),
    ]
    for args, needle in cases:
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and needle in last, (args, res.stderr)


def test_cli_spawned_copy_imports_no_numba():
    """vLLM's spawned engine processes re-run scripts/evaluate.py as ``__mp_main__``; importing numba there (through
    rewards/) made vLLM's CPU worker fail to start (``'_lib_fn_wrapper' object has no attribute 'get'``)."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
        "print(sorted(m for m in ('numba', 'llvmlite', 'rewards', 'evaluation') if m in sys.modules))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "scripts" / "evaluate.py")], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr[-2000:]
