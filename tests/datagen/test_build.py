"""Dataset building: the published schema, answers vs geometry, balance, split, reproducibility, write safety."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
from datasets import DatasetDict

from datagen import build as build_mod
from datagen.build import MARKER, BuildError, BuildSettings, build_from_vg, count_table, make_dataset_dict
from datagen.questions import CATEGORIES
from datagen.stvqa import load_stvqa
from datagen.vg import ImageFileError, load_visual_genome
from rewards.prompt import PromptBuilder, PromptSettings, format_options
from tests.datagen.helpers import PUBLISHED_COLUMNS, check_answer, check_scene, scene_of, tree_digest


@pytest.fixture(scope="module")
def built_dd(built) -> DatasetDict:
    return datasets.load_from_disk(str(built))


def test_schema_is_the_published_one(built, built_dd):
    assert set(built_dd) == {"train", "val"}
    for split in built_dd.values():
        assert split.column_names == PUBLISHED_COLUMNS
        assert isinstance(split.features["images"], datasets.List)
        assert isinstance(split.features["images"].feature, datasets.Image)
        assert split.features["rating"] == datasets.Value("int32")
        assert split.features["options"] == datasets.List(datasets.Value("string"))
    marker = json.loads((built / MARKER).read_text())
    assert marker["tool"] == "spatialthinker-datagen" and marker["settings"]["seed"] == 0
    assert marker["counts"] == {"train": len(built_dd["train"]), "val": len(built_dd["val"])}


def test_rows_are_consistent(built_dd, vg_images):
    builder = PromptBuilder(PromptSettings())
    by_id = {str(i.image_id): i for i in vg_images}
    for split in built_dd.values():
        for row in split:
            img = by_id[row["image_id"]]
            assert len(row["images"]) == 1 and row["images"][0].size == (img.width, img.height)
            q, opts, letter = row["question_only"], row["options"], row["answer_only"]
            assert 2 <= len(opts) <= 4 and not any(re.match(r"\([A-Z]\)", o) for o in opts)
            assert row["problem"] == builder.text(q, opts, (img.width, img.height))
            assert f"Image size: ({img.width} x {img.height})" in row["problem"]
            assert row["question_with_options"] == f"{q}\nOptions:\n{format_options(opts)}"
            text = opts["ABCD".index(letter)]
            scene = scene_of(row["answer_option_text"])
            scene_json = json.dumps(scene)
            assert row["answer"] == f"<scene>{scene_json}</scene>\n<answer>{letter}</answer>"
            assert row["answer_text"] == f"<scene>{scene_json}</scene>\n<answer>{text}</answer>"
            assert row["answer_text_only"] == text
            assert row["answer_option_text_only"] == f"({letter}) {text}"
            assert row["answer_option_text"] == f"<scene>{scene_json}</scene>\n<answer>({letter}) {text}</answer>"
            assert row["category"] in CATEGORIES
            assert row["level"] in ("easy", "medium", "hard") and 1 <= row["rating"] <= 10
            assert row["level"] == ("easy" if row["rating"] <= 3 else "medium" if row["rating"] <= 6 else "hard")
            check_scene(scene, q, img)


def test_every_category_answer_matches_geometry(built_dd, vg_images):
    by_id = {str(i.image_id): i for i in vg_images}
    seen = Counter()
    for split in built_dd.values():
        for row in split:
            check_answer(
                row["category"], row["question_only"], row["options"], row["answer_text_only"], by_id[row["image_id"]]
            )
            seen[row["category"]] += 1
    assert set(seen) == set(CATEGORIES), seen


def test_one_question_per_image_and_per_category_split(built_dd):
    ids = [r for s in built_dd.values() for r in s["image_id"]]
    assert len(ids) == len(set(ids))
    for cat in CATEGORIES:
        n_train = built_dd["train"]["category"].count(cat)
        n_val = built_dd["val"]["category"].count(cat)
        n = n_train + n_val
        assert n_val == (max(1, round(0.1 * n)) if n >= 2 else 0), (cat, n_train, n_val)


def _shares(dd) -> Counter:
    c = Counter(cat for s in dd.values() for cat in s["category"])
    total = sum(c.values())
    return Counter({k: v / total for k, v in c.items()})


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_category_balance(vg_images, fraction):
    dd = make_dataset_dict(vg_images, BuildSettings(relation_fraction=fraction))
    shares = _shares(dd)
    assert abs(shares["relation"] - fraction) <= 0.03, shares
    rest = (1 - fraction) / 8
    for cat in CATEGORIES[1:]:
        assert abs(shares[cat] - rest) <= 0.03, (cat, shares)


def test_several_questions_per_image(vg_images):
    dd = make_dataset_dict(vg_images, BuildSettings(per_image=3, categories=CATEGORIES))
    rows = [(r["image_id"], r["category"]) for s in dd.values() for r in s.select_columns(["image_id", "category"])]
    per_image = Counter(i for i, _ in rows)
    assert max(per_image.values()) == 3 and len(rows) == len(set(rows))
    assert not set(dd["train"]["image_id"]) & set(dd["val"]["image_id"])  # an image stays in one split
    # categories are distinct within an image, so relation can take at most a third here: it gets nearly that
    assert _shares(dd)["relation"] >= 0.3


def test_category_subset_and_settings_errors(vg_images):
    dd = make_dataset_dict(vg_images[:20], BuildSettings(categories=("depth", "count"), relation_fraction=0.9))
    assert set(dd["train"]["category"]) | set(dd["val"]["category"]) == {"depth", "count"}
    with pytest.raises(BuildError, match="unknown categories"):
        BuildSettings(categories=("colour",))
    with pytest.raises(BuildError, match="relation_fraction"):
        BuildSettings(relation_fraction=1.5)
    with pytest.raises(BuildError, match="val_fraction"):
        BuildSettings(val_fraction=1.0)
    with pytest.raises(BuildError, match="per_image"):
        BuildSettings(per_image=0)


def _as_rows(dd):
    return {k: v.cast_column("images", datasets.List(datasets.Image(decode=False))).to_list() for k, v in dd.items()}


def test_same_seed_same_dataset(vg_root, tmp_path):
    build_from_vg(vg_root, tmp_path / "a", seed=5)
    build_from_vg(vg_root, tmp_path / "b", seed=5)
    build_from_vg(vg_root, tmp_path / "c", seed=6)
    a, b, c = (_as_rows(datasets.load_from_disk(str(tmp_path / n))) for n in "abc")
    assert a == b
    assert a != c


def test_corrupt_image_is_an_error_or_skipped(copy_vg, tmp_path, caplog):
    d = copy_vg()
    (d / "images" / "7.jpg").write_bytes((d / "images" / "7.jpg").read_bytes()[:300])
    with pytest.raises(ImageFileError, match=r"images/7\.jpg: image_id=7: cannot read image"):
        build_from_vg(d, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with caplog.at_level(logging.WARNING):
        build_from_vg(d, tmp_path / "out", allow_bad_images=True)
    assert "image_id=7" in caplog.text and "skipped" in caplog.text
    ids = [r for s in datasets.load_from_disk(str(tmp_path / "out")).values() for r in s["image_id"]]
    assert "7" not in ids and len(ids) == 59


def test_missing_images_skipped_when_allowed(copy_vg, tmp_path):
    d = copy_vg()
    (d / "images" / "3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="3"):
        build_from_vg(d, tmp_path / "out")
    build_from_vg(d, tmp_path / "out", require_images=False)
    assert "3" not in load_stvqa(tmp_path / "out", "train")["image_id"]


def test_output_may_not_touch_the_input(copy_vg, tmp_path):
    d = copy_vg()
    before = tree_digest(d)
    for out, why in ((d, "is the input folder"), (d / "images", "lies inside"), (d / "sub" / "x", "lies inside"),
                     (tmp_path, "contains the input")):  # fmt: skip
        with pytest.raises(BuildError, match=why):
            build_from_vg(d, out, overwrite=True)
    assert tree_digest(d) == before


def test_overwrite_only_replaces_own_datasets(vg_root, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "important.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not empty; pass --overwrite"):
        build_from_vg(vg_root, other)
    with pytest.raises(BuildError, match="not a dataset written by make_dataset"):
        build_from_vg(vg_root, other, overwrite=True)
    assert (other / "important.txt").read_text() == "keep me" and len(list(other.iterdir())) == 1
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(BuildError, match="not a folder"):
        build_from_vg(vg_root, afile, overwrite=True)

    out = tmp_path / "ds"
    build_from_vg(vg_root, out, seed=1)
    with pytest.raises(BuildError, match="pass --overwrite"):
        build_from_vg(vg_root, out, seed=2)
    build_from_vg(vg_root, out, seed=2, overwrite=True)
    assert json.loads((out / MARKER).read_text())["settings"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "file.txt", "notes"]  # no temporary folders left


def test_crash_while_writing_keeps_the_old_dataset(vg_root, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    build_from_vg(vg_root, out, seed=1)
    before = tree_digest(out)

    def boom(self, path, *a, **k):
        Path(path).mkdir(parents=True)
        (Path(path) / "half-written").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(build_mod.DatasetDict, "save_to_disk", boom)
    with pytest.raises(OSError, match="disk full"):
        build_from_vg(vg_root, out, seed=2, overwrite=True)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_failed_swap_restores_the_old_dataset(vg_root, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    build_from_vg(vg_root, out, seed=1)
    before = tree_digest(out)
    real_rename = os.rename

    def rename(src, dst):
        if ".tmp-" in str(src):  # the old dataset is already moved aside
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        build_from_vg(vg_root, out, seed=2, overwrite=True)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_count_table(built_dd):
    table = count_table(built_dd)
    lines = table.splitlines()
    assert lines[0].split() == ["category", "train", "val", "total", "share"]
    assert lines[2].split()[0] == "relation"
    total = lines[-1].split()
    assert total[0] == "total" and int(total[-1]) == len(built_dd["train"]) + len(built_dd["val"])


def test_loader_image_sizes(vg_root):
    assert all((i.width, i.height) == (224, 224) for i in load_visual_genome(vg_root, limit=5))


def test_listed_size_differs_from_file(copy_vg, tmp_path, caplog):
    d = copy_vg()
    data = json.loads((d / "image_data.json").read_text())
    objs = json.loads((d / "objects.json").read_text())
    rels = json.loads((d / "relationships.json").read_text())
    for e in data:  # list every image at twice its real size, with boxes to match
        e["width"], e["height"] = 448, 448
    for entry in objs + rels:
        for o in entry.get("objects", []) + [
            r[k] for r in entry.get("relationships", []) for k in ("subject", "object")
        ]:
            for k in ("x", "y", "w", "h"):
                o[k] *= 2
    for name, content in (("image_data", data), ("objects", objs), ("relationships", rels)):
        (d / f"{name}.json").write_text(json.dumps(content))
    with caplog.at_level(logging.WARNING):
        build_from_vg(d, tmp_path / "out")
    assert "file is 224x224 but image_data.json lists 448x448" in caplog.text
    ref = {r["image_id"]: r for r in datasets.load_from_disk(str(tmp_path / "out"))["train"]}
    for row in ref.values():
        assert "Image size: (224 x 224)" in row["problem"]
        for o in scene_of(row["answer_option_text"])["objects"]:
            assert 0 <= o["bbox"][0] < o["bbox"][2] <= 224 and 0 <= o["bbox"][1] < o["bbox"][3] <= 224
