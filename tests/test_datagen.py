import json
import random
import shutil

import pytest

from datagen.build import build_stvqa, load_stvqa
from datagen.questions import LETTERS, QUESTION_TYPES, question_subgraph, synthesize_questions
from datagen.vg import VGFormatError, load_visual_genome


def test_loader_roundtrip(vg_dir):
    imgs = load_visual_genome(vg_dir)
    assert len(imgs) == 12
    raw = json.loads((vg_dir / "objects.json").read_text())
    assert sum(len(i.objects) for i in imgs) == sum(len(e["objects"]) for e in raw)
    for img in imgs:
        assert img.image_path and img.width == 224
        for r in img.relations:
            assert r.subject_id in img.objects and r.object_id in img.objects


def _copy(vg_dir, tmp_path):
    d = tmp_path / "vg"
    shutil.copytree(vg_dir, d)
    return d


def test_missing_file(vg_dir, tmp_path):
    d = _copy(vg_dir, tmp_path)
    (d / "relationships.json").unlink()
    with pytest.raises(FileNotFoundError, match="relationships.json"):
        load_visual_genome(d)


def test_invalid_json(vg_dir, tmp_path):
    d = _copy(vg_dir, tmp_path)
    (d / "objects.json").write_text('[{"image_id": 1,')
    with pytest.raises(VGFormatError, match=r"objects.json: invalid JSON at line 1"):
        load_visual_genome(d)


def test_missing_field_names_entry(vg_dir, tmp_path):
    d = _copy(vg_dir, tmp_path)
    data = json.loads((d / "objects.json").read_text())
    del data[2]["objects"][0]["w"]
    (d / "objects.json").write_text(json.dumps(data))
    with pytest.raises(VGFormatError, match=r"entry 2 \(image_id=3\) object 0: missing field 'w'"):
        load_visual_genome(d)


def test_bad_values(vg_dir, tmp_path):
    d = _copy(vg_dir, tmp_path)
    data = json.loads((d / "image_data.json").read_text())
    data[0]["width"] = -5
    (d / "image_data.json").write_text(json.dumps(data))
    with pytest.raises(VGFormatError, match="'width' must be >= 1"):
        load_visual_genome(d)
    (d / "image_data.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(VGFormatError, match="top level must be a JSON list"):
        load_visual_genome(d)


def test_missing_image_is_reported_or_skipped(vg_dir, tmp_path):
    d = _copy(vg_dir, tmp_path)
    (d / "images" / "4.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*: 4"):
        load_visual_genome(d)
    imgs = load_visual_genome(d, require_images=False)
    assert [i.image_path is None for i in imgs].count(True) == 1


def test_questions_are_consistent_with_geometry(vg_dir):
    imgs = load_visual_genome(vg_dir)
    rng = random.Random(0)
    seen = set()
    vocab = sorted({o.name for i in imgs for o in i.objects.values()})
    for img in imgs:
        by_name = {}
        for o in img.objects.values():
            by_name.setdefault(o.name, []).append(o)
        for s in synthesize_questions(img, rng, max_per_image=7, vocabulary=vocab):
            seen.add(s.question_type)
            assert s.answer in LETTERS[: len(s.options)]
            assert len(set(s.options)) == len(s.options)
            assert s.gt_objects, s
            ids = {o["id"] for o in s.gt_objects}
            assert all(r["subject"] in ids and r["object"] in ids for r in s.gt_relationships)
            if s.question_type == "position":
                a, b = s.question.split("the ")[1].split(" to")[0], s.question.split("of the ")[1].rstrip("?")
                left = by_name[a][0].center[0] < by_name[b][0].center[0]
                assert s.answer_text == ("left" if left else "right")
            if s.question_type == "count":
                name = s.question[len("How many ") :].split(" are")[0]
                assert s.answer_text == str(len(by_name[name]))
            if s.question_type == "size":
                a = by_name[s.answer_text][0].area
                other = [o for o in s.options if o != s.answer_text][0]
                assert a > by_name[other][0].area
    assert {"position", "size", "count", "existence"} <= seen


def test_unknown_question_type(vg_dir):
    img = load_visual_genome(vg_dir)[0]
    with pytest.raises(ValueError, match="unknown question type"):
        synthesize_questions(img, random.Random(0), types=("colour",))


def test_subgraph_cap(vg_dir):
    img = max(load_visual_genome(vg_dir), key=lambda i: len(i.objects))
    anchor = next(iter(img.objects))
    objs, rels = question_subgraph(img, [anchor], max_objects=2)
    assert len(objs) <= 2 and objs[0]["name"] == img.objects[anchor].name


def test_dataset_columns(stvqa):
    row = stvqa[0]
    assert set(QUESTION_TYPES) >= set(stvqa["question_type"])
    assert row["image"].size == (224, 224)
    assert row["prompt"].startswith(row["question"]) and "Options: (A)" in row["prompt"]
    assert all(len(o["bbox"]) == 4 for o in row["gt_objects"])


def test_build_refuses_to_overwrite(vg_dir, stvqa_dir):
    imgs = load_visual_genome(vg_dir)
    with pytest.raises(FileExistsError):
        build_stvqa(imgs, stvqa_dir)
    assert load_stvqa(stvqa_dir) is not None  # untouched


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_stvqa(tmp_path / "nope")
