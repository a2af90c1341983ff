"""The STVQA loader (save_to_disk folder, parquet, arrow, errors) and the per-row task fields."""

from __future__ import annotations

import shutil

import datasets
import pytest
from PIL import Image

from datagen.stvqa import (
    COLUMNS,
    TASK_COLUMNS,
    DatasetError,
    build_dataset,
    load_stvqa,
    split_ground_truth,
    task_fields,
)
from tests.datagen.helpers import PUBLISHED_COLUMNS


@pytest.fixture(scope="module")
def dd(built):
    return datasets.load_from_disk(str(built))


@pytest.fixture(scope="module")
def parquet_repo(dd, tmp_path_factory):
    """A local copy of a hub repository: data/train-00000-of-00001.parquet, data/val-00000-of-00001.parquet."""
    root = tmp_path_factory.mktemp("hubcopy")
    (root / "data").mkdir()
    for split, ds in dd.items():
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def test_columns_constant_is_the_published_list():
    assert list(COLUMNS) == PUBLISHED_COLUMNS
    assert set(TASK_COLUMNS) <= set(COLUMNS)


def test_load_save_to_disk_folder(built, dd):
    for split in ("train", "val"):
        ds = load_stvqa(built, split)
        assert len(ds) == len(dd[split]) and ds.column_names == PUBLISHED_COLUMNS
        assert isinstance(ds[0]["images"][0], dict)  # undecoded until task_fields
    assert len(load_stvqa(str(built), "validation")) == len(dd["val"])  # alias
    decoded = load_stvqa(built, "train", decode_images=True)
    assert isinstance(decoded[0]["images"][0], Image.Image)
    assert not list(built.rglob("cache-*.arrow"))  # loading writes nothing into the dataset folder


def test_load_parquet_folder_and_file(parquet_repo, dd):
    for split in ("train", "val"):
        ds = load_stvqa(parquet_repo, split)
        assert ds["question_only"] == dd[split]["question_only"]
        f = task_fields(ds[0])
        assert f["image_size"] == (224, 224) and f["ground_truth"] == dd[split][0]["answer_option_text"]
    single = parquet_repo / "data" / "val-00000-of-00001.parquet"
    assert len(load_stvqa(single, "val")) == len(dd["val"])
    with pytest.raises(DatasetError, match=r"val-00000-of-00001.parquet: this file holds split 'val', not 'train'"):
        load_stvqa(single, "train")


def test_load_arrow_files(built, dd, tmp_path):
    # the arrow files of a save_to_disk folder, without its json files: split from the sub-folder name
    for split in ("train", "val"):
        (tmp_path / "arrows" / split).mkdir(parents=True)
        for f in (built / split).glob("*.arrow"):
            shutil.copy(f, tmp_path / "arrows" / split / f.name)
    ds = load_stvqa(tmp_path / "arrows", "val")
    assert ds["question_only"] == dd["val"]["question_only"]
    # a single arrow file
    one = tmp_path / "train.arrow"
    shutil.copy(next((built / "train").glob("*.arrow")), one)
    ds = load_stvqa(one, "train")
    assert len(ds) == len(dd["train"]) and task_fields(ds[1])["question"] == dd["train"][1]["question_only"]


def test_unknown_split(built, parquet_repo):
    with pytest.raises(DatasetError, match=r"unknown split 'test'; available splits: train, val"):
        load_stvqa(built, "test")
    with pytest.raises(DatasetError, match=r"hubcopy\d*: unknown split 'test'; available splits: train, val"):
        load_stvqa(parquet_repo, "test")


def test_missing_columns(dd, tmp_path):
    dd["train"].remove_columns(["category", "options"]).to_parquet(str(tmp_path / "train.parquet"))
    with pytest.raises(DatasetError, match=r"train.parquet split 'train': missing column\(s\) options, category"):
        load_stvqa(tmp_path / "train.parquet", "train")


def test_not_found_and_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match=r"nope: no such file or directory"):
        load_stvqa(tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no dataset here"):
        load_stvqa(tmp_path / "empty", "train")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"x.csv: not a dataset file"):
        load_stvqa(tmp_path / "x.csv", "train")
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"bad.parquet: cannot read"):
        load_stvqa(tmp_path / "bad.parquet", "train")


def test_task_fields(built, dd):
    ds = load_stvqa(built, "train")
    row = ds[0]
    f = task_fields(row)
    assert set(f) == {"id", "question", "options", "image", "image_size", "ground_truth", "category"}
    assert f["id"] == f"{row['image_id']}-{row['category']}"
    assert f["question"] == row["question_only"] and f["options"] == row["options"]
    assert isinstance(f["image"], Image.Image) and f["image"].mode == "RGB" and f["image_size"] == (224, 224)
    scene, answer = split_ground_truth(f["ground_truth"])
    assert answer == row["answer_option_text_only"] and scene["objects"]
    # rows of a decoding dataset work too
    assert task_fields(load_stvqa(built, "train", decode_images=True)[0])["image_size"] == (224, 224)
    ids = [task_fields(r)["id"] for r in ds]
    assert len(ids) == len(set(ids))


def test_task_fields_names_row_and_field(built):
    row = load_stvqa(built, "train")[0]
    iid = row["image_id"]
    bad = dict(row, images=[{"bytes": b"\xff\xd8broken", "path": "x.jpg"}])
    with pytest.raises(DatasetError, match=rf"row image_id='{iid}': field 'images' cannot be decoded"):
        task_fields(bad)
    with pytest.raises(DatasetError, match=rf"row image_id='{iid}': field 'images' holds no image"):
        task_fields(dict(row, images=[]))
    with pytest.raises(DatasetError, match="field 'answer_option_text' is not a ground truth"):
        task_fields(dict(row, answer_option_text="<answer>(A) x</answer>"))
    with pytest.raises(DatasetError, match="field 'options' must be a list"):
        task_fields(dict(row, options=["only one"]))
    with pytest.raises(DatasetError, match="missing field 'category'"):
        task_fields({k: v for k, v in row.items() if k != "category"})


def test_build_dataset_entry_point(vg_root, tmp_path):
    out = build_dataset(tmp_path / "syn", synthetic_images=12, synthetic_root=tmp_path / "scenes", seed=3)
    assert (tmp_path / "scenes" / "image_data.json").is_file()
    n = len(load_stvqa(out, "train")) + len(load_stvqa(out, "val"))
    assert n == 12
    build_dataset(tmp_path / "tmpsyn", synthetic_images=12, seed=3)  # scenes in a temporary folder
    a = load_stvqa(tmp_path / "tmpsyn", "train")["answer_option_text"]
    assert a == load_stvqa(out, "train")["answer_option_text"]
    build_dataset(tmp_path / "vg", vg_root=vg_root, relation_fraction=0.2)
    assert len(load_stvqa(tmp_path / "vg", "train")) > 40
    with pytest.raises(DatasetError, match="pass --overwrite"):
        build_dataset(tmp_path / "vg", vg_root=vg_root)
    with pytest.raises(DatasetError, match="relation_fraction"):
        build_dataset(tmp_path / "x", synthetic_images=3, relation_fraction=3.0)
    with pytest.raises(DatasetError, match="lies inside the input folder"):
        build_dataset(vg_root / "out", vg_root=vg_root)
