"""Tiny benchmark copies in each benchmark's published format, generated into a test's tmp_path.

Every writer returns the path to pass as the benchmark's source (the directory ``--data-root`` would find) and
writes a handful of rows with small solid-colour images. The answers are chosen so that the aggregates of
``tests/evaluation/test_evaluation.py`` can be computed by hand; ``CORRECT``/``WRONG`` outputs for each row are
listed in ``PREDICTIONS``.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

_COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


def png(width: int = 32, height: int = 24, k: int = 0, fmt: str = "PNG") -> bytes:
    """A solid-colour image's encoded bytes."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), _COLORS[k % len(_COLORS)]).save(buf, format=fmt)
    return buf.getvalue()


def hf_image(width: int = 32, height: int = 24, k: int = 0) -> dict:
    """An HF ``Image`` feature value as parquet stores it."""
    return {"bytes": png(width, height, k), "path": None}


def b64(width: int = 32, height: int = 24, k: int = 0) -> str:
    """A base64 image string (VLMEvalKit TSVs, MME-RealWorld ``bytes``)."""
    return base64.b64encode(png(width, height, k, fmt="JPEG")).decode()


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _options(choices: list[str]) -> str:
    return "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))


# ---------------------------------------------------------------------------------------------------------------------
# CV-Bench: test_2d.parquet + test_3d.parquet (current layout); jsonl + img/ (raw layout)

CV_ROWS = [
    # (idx, type, task, source, question, choices, answer)
    (0, "2D", "Count", "ADE20K", "How many chairs are in the image?", ["3", "2", "1", "0"], "(C)"),
    (1, "2D", "Count", "ADE20K", "How many lamps are in the image?", ["1", "2", "3", "4"], "(A)"),
    (2, "2D", "Relation", "ADE20K", "Is the bed left or right of the door?", ["left", "right"], "(B)"),
    (3, "2D", "Count", "COCO", "How many dogs are in the image?", ["2", "5", "4"], "(B)"),
    (4, "3D", "Depth", "Omni3D", "Which is closer to the camera?", ["lamp", "chair"], "(A)"),
    (5, "3D", "Depth", "Omni3D", "Which is closer to the camera?", ["table", "sofa"], "(B)"),
    (6, "3D", "Distance", "Omni3D", "Which is closer to the cup?", ["plate", "fork"], "(A)"),
    (7, "3D", "Distance", "Omni3D", "Which is closer to the cup?", ["knife", "glass"], "(B)"),
]


def _cv_record(r, image) -> dict:
    idx, kind, task, source, q, choices, answer = r
    return {
        "idx": idx,
        "type": kind,
        "task": task,
        "image": image,
        "question": q,
        "choices": choices,
        "answer": answer,
        "prompt": f"{q} Select from the following choices.\n{_options(choices)}",
        "filename": f"img/{kind}/{task.lower()}/{source.lower()}_{idx}.png",
        "source": source,
        "source_dataset": source,
        "source_filename": f"{idx}.jpg",
    }


def cv_bench(root: Path) -> Path:
    """``CV-Bench/test_2d.parquet`` and ``test_3d.parquet`` (HF Image column). Image of row i: (40+i) x 30."""
    d = root / "CV-Bench"
    recs = [_cv_record(r, hf_image(40 + r[0], 30, r[0])) for r in CV_ROWS]
    write_parquet(d / "test_2d.parquet", [x for x in recs if x["type"] == "2D"])
    write_parquet(d / "test_3d.parquet", [x for x in recs if x["type"] == "3D"])
    return d


def cv_bench_jsonl(root: Path) -> Path:
    """The raw layout: ``test_2d.jsonl`` with ``filename`` paths into ``img/``."""
    d = root / "CV-Bench-raw"
    recs = []
    for r in CV_ROWS[:4]:
        rec = _cv_record(r, None)
        del rec["image"]
        img = d / rec["filename"]
        img.parent.mkdir(parents=True, exist_ok=True)
        img.write_bytes(png(50, 20 + r[0], r[0]))
        recs.append(rec)
    write_jsonl(d / "test_2d.jsonl", recs)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# BLINK: {Task}/val-00000-of-00001.parquet

BLINK_ROWS = {
    "Spatial_Relation": [
        ("Is the car beneath the cat?", ["yes", "no"], "(B)"),
        ("Is the cup on the table?", ["yes", "no"], "(A)"),
        ("Is the dog left of the man?", ["yes", "no"], "(A)"),
    ],
    "Relative_Depth": [
        ("Which point is closer to the camera?", ["A is closer", "B is closer"], "(A)"),
        ("Which point is closer to the camera?", ["A is closer", "B is closer"], "(B)"),
    ],
}


def blink(root: Path) -> Path:
    d = root / "BLINK"
    for task, rows in BLINK_ROWS.items():
        recs = []
        for i, (q, choices, answer) in enumerate(rows):
            recs.append(
                {
                    "idx": f"val_{task}_{i + 1}",
                    "question": q,
                    "sub_task": task.replace("_", " "),
                    "image_1": hf_image(36, 36, i),
                    "image_2": None,
                    "image_3": None,
                    "image_4": None,
                    "choices": choices,
                    "answer": answer,
                    "prompt": f"{q}\nSelect from the following choices.\n{_options(choices)}",
                    "explanation": "",
                }
            )
        write_parquet(d / task / "val-00000-of-00001.parquet", recs)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# 3DSRBench: the paper's re-package (parquet) and the VLMEvalKit TSV


def dsr_parquet(root: Path) -> Path:
    d = root / "3DSRBench"
    rows = [
        ("Which object is higher?", ["the lamp", "the shelf"], "(B)", "height"),
        ("Is the car in front of the man?", ["yes", "no"], "(A)", "location"),
        ("Which way does the dog face?", ["left", "right", "camera", "away"], "(D)", "orientation"),
    ]
    recs = [
        {
            "image": hf_image(30, 30, i),
            "prompt": f"{q}\n{_options(c)}",
            "answer": a,
            "choices": c,
            "task": t,
        }
        for i, (q, c, a, t) in enumerate(rows)
    ]
    write_parquet(d / "data" / "test-00000-of-00001.parquet", recs)
    return d


def dsr_tsv(root: Path) -> Path:
    d = root / "3DSRBench-tsv"
    rows = []
    for i, qid in enumerate(["abcdefgh", "abcdefgh-1", "abcdefgh-flip", "abcdefgh-flip-1"]):
        rows.append(
            {
                "index": i,
                "qid": qid,
                "question": "Is the cup left of the plate?",
                "A": "yes",
                "B": "no",
                "answer": "A" if i % 2 == 0 else "B",
                "category": "location_next_to",
                "image": b64(28, 20, i),
            }
        )
    return write_tsv(d / "3dsrbench_v1_vlmevalkit_circular.tsv", rows)


# ---------------------------------------------------------------------------------------------------------------------
# MMVP: Questions.csv + "MMVP Images/{Index}.jpg"

MMVP_ROWS = [
    (1, "Is the door open or closed?", "(a) Open (b) Closed", "(a)"),
    (2, "Is the door open or closed?", "(a) Open (b) Closed", "(b)"),
    (3, "Is the dog facing left or right?", "(a) Left (b) Right", "(b)"),
    (4, "Is the dog facing left or right?", "(a) Left (b) Right", "(a)"),
]


def mmvp(root: Path) -> Path:
    d = root / "MMVP"
    (d / "MMVP Images").mkdir(parents=True, exist_ok=True)
    for index, *_ in MMVP_ROWS:
        (d / "MMVP Images" / f"{index}.jpg").write_bytes(png(24, 24, index, fmt="JPEG"))
    records = [{"Index": i, "Question": q, "Options": o, "Correct Answer": a} for i, q, o, a in MMVP_ROWS]
    pd.DataFrame(records).to_csv(d / "Questions.csv", index=False)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# SpatialReasonerEval / SpatialBench / RealWorldQA / RoboSpatial: the paper's HF re-packages (parquet)


def spatialreasoner(root: Path) -> Path:
    d = root / "SpatialReasonerEval"
    recs = [
        {
            "image": hf_image(30, 20, 0),
            "prompt": "Which point is closer to the camera?\n(A) A is closer\n(B) B is closer",
            "answer": "(B)",
            "choices": "['A is closer', 'B is closer']",
            "task": "Depth",
        },
        {
            "image": hf_image(30, 20, 1),
            "prompt": "Which object is closer to the car?\n(A) tree\n(B) bench",
            "answer": "(A)",
            "choices": "['tree', 'bench']",
            "task": "Distance",
        },
    ]
    write_parquet(d / "data" / "train-00000-of-00001.parquet", recs)
    return d


def spatialbench(root: Path) -> Path:
    d = root / "SpatialBench"
    recs = [
        {
            "image": hf_image(20, 20, 0),
            "answer": "yes",
            "category": "existence",
            "text": "Is there a cup",
            "question_id": 0,
        },
        {
            "image": hf_image(20, 20, 1),
            "answer": "3",
            "category": "counting",
            "text": "How many apples are there",
            "question_id": 1,
        },
        {
            "image": hf_image(20, 20, 2),
            "answer": "left",
            "category": "positional",
            "text": "Is the cat on the left or right of the dog",
            "question_id": 2,
        },
    ]
    write_parquet(d / "data" / "train-00000-of-00001.parquet", recs)
    return d


def realworldqa(root: Path) -> Path:
    d = root / "realworldqa"
    recs = [
        {
            "image": hf_image(64, 32, 0),
            "question": "Which direction is the road turning?\nA. left\nB. right\nC. straight\n"
            "Please answer directly with only the letter of the correct option and nothing else.",
            "answer": "B",
        },
        {
            "image": hf_image(64, 32, 1),
            "question": "How many cars are in front of us? Please answer directly with a single word or number.",
            "answer": "2",
        },
    ]
    write_parquet(d / "data" / "test-00000-of-00001.parquet", recs)
    return d


def robospatial(root: Path) -> Path:
    d = root / "RoboSpatial-Home"
    recs = [
        {
            "image": hf_image(40, 30, 0),
            "depth_image": hf_image(40, 30, 5),
            "prompt": "Can the mug fit in front of the plate? Answer yes or no.",
            "answer": "(A)",
            "options": ["yes", "no"],
            "category": "compatibility",
        },
        {
            "image": hf_image(40, 30, 1),
            "depth_image": hf_image(40, 30, 5),
            "prompt": "Is the lamp above the table? Answer yes or no.",
            "answer": "(B)",
            "options": ["yes", "no"],
            "category": "configuration",
        },
    ]
    write_parquet(d / "data" / "train-00000-of-00001.parquet", recs)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# MM-Star (mmstar.parquet), V*Bench (jsonl + paths), MME-RealWorld-Lite (parquet with base64 ``bytes``)

MMSTAR_ROWS = [
    # (question with options, answer, category, l2_category)
    ("What colour is the car?\nOptions: A: red, dark, B: blue, C: green, D: white", "A", "coarse perception", "color"),
    ("What colour is the bus?\nOptions: A: red, B: blue, C: green, D: white", "B", "coarse perception", "color"),
    ("Where is the cat?\nOptions: A: left, B: right, C: top, D: bottom", "C", "coarse perception", "position"),
    ("How many birds?\nOptions: A: 1, B: 2, C: 3, D: 4", "D", "math", "counting"),
]


def mmstar(root: Path) -> Path:
    d = root / "MMStar"
    recs = [
        {
            "index": i,
            "question": q,
            "image": hf_image(30, 30, i),
            "answer": a,
            "category": c,
            "l2_category": l2,
            "meta_info": {"source": "x", "split": "val", "image_path": f"{i}.jpg"},
        }
        for i, (q, a, c, l2) in enumerate(MMSTAR_ROWS)
    ]
    write_parquet(d / "mmstar.parquet", recs)
    return d


def vstar(root: Path) -> Path:
    d = root / "vstar_bench"
    rows = [
        ("direct_attributes/sa_1.jpg", "What is the color of the cup?\n(A) red\n(B) blue\n(C) green\n(D) white", "A"),
        ("relative_position/sa_2.jpg", "Is the cup on the left or right of the bag?\n(A) left\n(B) right", "B"),
    ]
    recs = []
    for i, (path, text, label) in enumerate(rows):
        (d / path).parent.mkdir(parents=True, exist_ok=True)
        (d / path).write_bytes(png(80, 60, i, fmt="JPEG"))
        recs.append(
            {
                "question_id": i,
                "image": path,
                "text": text + "\nAnswer with the option's letter from the given choices directly.",
                "label": label,
                "category": path.split("/")[0],
            }
        )
    write_jsonl(d / "test_questions.jsonl", recs)
    return d


MME_ROWS = [
    ("Perception/Monitoring", "A"),
    ("Perception/Autonomous_Driving", "B"),
    ("Reasoning/Monitoring", "C"),
    ("Reasoning/OCR with Complex Context", "E"),
]


def mme_realworld(root: Path) -> Path:
    d = root / "MME-RealWorld-Lite"
    recs = [
        {
            "index": i,
            "question": f"Question {i}: what is shown?",
            "multi-choice options": [f"({x}) option {x.lower()}{i}" for x in "ABCDE"],
            "answer": a,
            "category": c,
            "l2-category": c.split("/")[1].lower(),
            "bytes": b64(48, 32, i),
        }
        for i, (c, a) in enumerate(MME_ROWS)
    ]
    write_parquet(d / "data" / "train-00000-of-00004.parquet", recs)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# HallusionBench: data/image-00000-of-00001.parquet (all id columns) and the VLMEvalKit TSV

HALLUSION_ROWS = [
    # (category, subcategory, set_id, figure_id, question_id, gt_answer)
    ("VD", "illusion", "0", "0", "0", "1"),
    ("VD", "illusion", "0", "1", "0", "0"),
    ("VD", "illusion", "0", "0", "1", "1"),
    ("VD", "illusion", "0", "1", "1", "1"),
    ("VS", "chart", "1", "0", "0", "1"),
    ("VS", "chart", "1", "1", "0", "0"),
]


def hallusionbench(root: Path) -> Path:
    d = root / "HallusionBench"
    recs = [
        {
            "category": c,
            "subcategory": s,
            "visual_input": "1" if f == "0" else "2",
            "set_id": st,
            "figure_id": f,
            "sample_note": "",
            "question_id": q,
            "question": f"Is statement {q} true for figure {f}?",
            "gt_answer_details": "",
            "gt_answer": gt,
            "filename": f"{c}/{s}/{st}_{f}.png",
            "image": hf_image(26, 26, i),
        }
        for i, (c, s, st, f, q, gt) in enumerate(HALLUSION_ROWS)
    ]
    write_parquet(d / "data" / "image-00000-of-00001.parquet", recs)
    return d


def hallusionbench_tsv(root: Path) -> Path:
    d = root / "HallusionBench-tsv"
    rows = [
        {
            "index": f"{c}_{s}_x_{st}_{f}_{q}",
            "image": b64(26, 26, i),
            "question": f"Is statement {q} true for figure {f}?",
            "answer": "Yes" if gt == "1" else "No",
            "category": c,
            "l2-category": s,
        }
        for i, (c, s, st, f, q, gt) in enumerate(HALLUSION_ROWS)
    ]
    return write_tsv(d / "HallusionBench.tsv", rows)


# ---------------------------------------------------------------------------------------------------------------------
# STVQA-7K val: data/val-00000-of-00001.parquet in the published schema

STVQA_ROWS = [
    # (image_id, size, question, options, letter, objects, category)
    (
        "101",
        (200, 150),
        "Where is the cup relative to the table?",
        ["under", "on", "beside"],
        "B",
        [("cup.1", [40, 30, 80, 70]), ("table.1", [10, 60, 190, 140])],
        "relation",
    ),
    (
        "102",
        (120, 90),
        "Which is closer to the camera, the dog or the cat?",
        ["dog", "cat"],
        "A",
        [("dog.1", [5, 5, 50, 80]), ("cat.1", [60, 20, 100, 60])],
        "depth",
    ),
]


def stvqa_record(image_id, size, question, options, letter, objects, category, k=0) -> dict:
    scene = {
        "objects": [{"id": oid, "bbox": box} for oid, box in objects],
        "relationships": [{"subject": objects[0][0], "predicate": "near", "object": objects[1][0]}],
    }
    scene_text = f"<scene>{json.dumps(scene)}</scene>"
    text = options[ord(letter) - 65]
    qwo = f"{question}\nOptions:\n{_options(options)}"
    return {
        "image_id": image_id,
        "images": [hf_image(*size, k)],
        "problem": f"<image> ... Image size: ({size[0]} x {size[1]})\nNow answer the following question:\nQ. {qwo}",
        "question_only": question,
        "question_with_options": qwo,
        "options": options,
        "answer": f"{scene_text}\n<answer>{letter}</answer>",
        "answer_only": letter,
        "answer_text": f"{scene_text}\n<answer>{text}</answer>",
        "answer_text_only": text,
        "answer_option_text": f"{scene_text}\n<answer>({letter}) {text}</answer>",
        "answer_option_text_only": f"({letter}) {text}",
        "category": category,
        "level": "easy",
        "rating": 5,
    }


def stvqa(root: Path) -> Path:
    d = root / "STVQA-7K"
    recs = [stvqa_record(*r, k=i) for i, r in enumerate(STVQA_ROWS)]
    write_parquet(d / "data" / "val-00000-of-00001.parquet", recs)
    write_parquet(d / "data" / "train-00000-of-00001.parquet", recs[:1])
    return d


WRITERS = {
    "stvqa": stvqa,
    "cv-bench": cv_bench,
    "cv-bench-2d": cv_bench,
    "cv-bench-3d": cv_bench,
    "blink": blink,
    "blink-spatial": blink,
    "blink-depth": blink,
    "3dsrbench": dsr_parquet,
    "mmvp": mmvp,
    "spatialreasoner": spatialreasoner,
    "spatialbench": spatialbench,
    "mmstar": mmstar,
    "vstar": vstar,
    "realworldqa": realworldqa,
    "mme-realworld-lite": mme_realworld,
    "robospatial": robospatial,
    "hallusionbench": hallusionbench,
}
"""Benchmark name -> writer of its fixture (the writer's directory is what ``--data-root`` finds)."""


def write_all(root: Path) -> Path:
    """Every fixture under ``root`` (a ``--data-root``)."""
    done = set()
    for writer in WRITERS.values():
        if writer not in done:
            writer(root)
            done.add(writer)
    return root
