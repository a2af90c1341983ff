"""Visual Genome loader: format errors, clipping, zero-area boxes, duplicate ids, image checks."""

from __future__ import annotations

import json
import logging

import pytest

from datagen.vg import ImageFileError, VGFormatError, load_visual_genome, read_image, rescale_image


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_loader_roundtrip(vg_root, vg_images):
    assert len(vg_images) == 60
    raw = json.loads((vg_root / "objects.json").read_text())
    assert sum(len(i.objects) for i in vg_images) == sum(len(e["objects"]) for e in raw)
    for img in vg_images:
        assert img.image_path and (img.width, img.height) == (224, 224)
        for r in img.relations:
            assert r.subject_id in img.objects and r.object_id in img.objects


def test_limit(vg_root):
    assert [i.image_id for i in load_visual_genome(vg_root, limit=3)] == [1, 2, 3]


def test_missing_file(copy_vg):
    d = copy_vg()
    (d / "relationships.json").unlink()
    with pytest.raises(FileNotFoundError, match="relationships.json"):
        load_visual_genome(d)


def test_invalid_json(copy_vg):
    d = copy_vg()
    (d / "objects.json").write_text('[{"image_id": 1,')
    with pytest.raises(VGFormatError, match=r"objects.json: invalid JSON at line 1"):
        load_visual_genome(d)


def test_missing_field_names_entry(copy_vg):
    d = copy_vg()
    _edit(d / "objects.json", lambda data: data[2]["objects"][0].pop("w"))
    with pytest.raises(VGFormatError, match=r"entry 2 \(image_id=3\) object 0: missing field 'w'"):
        load_visual_genome(d)


def test_bad_values(copy_vg):
    d = copy_vg()
    _edit(d / "image_data.json", lambda data: data[0].update(width=-5))
    with pytest.raises(VGFormatError, match="'width' must be >= 1"):
        load_visual_genome(d)
    (d / "image_data.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(VGFormatError, match="top level must be a JSON list"):
        load_visual_genome(d)


def test_missing_image_is_reported_or_skipped(copy_vg):
    d = copy_vg()
    (d / "images" / "4.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*: 4"):
        load_visual_genome(d)
    imgs = load_visual_genome(d, require_images=False)
    assert [i.image_id for i in imgs if i.image_path is None] == [4]


def test_box_outside_image_is_clipped_with_warning(copy_vg, caplog):
    d = copy_vg()

    def grow(data):
        o = data[1]["objects"][0]
        o["x"], o["w"] = 200, 100  # 200..300 in a 224-wide image

    _edit(d / "objects.json", grow)
    oid = json.loads((d / "objects.json").read_text())[1]["objects"][0]["object_id"]
    with caplog.at_level(logging.WARNING, logger="datagen.vg"):
        imgs = load_visual_genome(d)
    o = imgs[1].objects[oid]
    assert o.box[0] == 200 and o.box[2] == 224
    msg = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert len(msg) == 1 and "objects.json: entry 1 (image_id=2) object 0" in msg[0] and f"object_id={oid}" in msg[0]


def test_zero_area_box_is_dropped_with_its_relations(copy_vg, caplog):
    d = copy_vg()
    rels = json.loads((d / "relationships.json").read_text())
    k = next(i for i, e in enumerate(rels) if e["relationships"])
    victim = rels[k]["relationships"][0]["subject"]["object_id"]
    iid = rels[k]["image_id"]

    def squash(data):
        for e in data:
            for o in e.get("objects", []):
                if o["object_id"] == victim:
                    o["w"] = 0
            for r in e.get("relationships", []):
                for end in ("subject", "object"):
                    if r[end]["object_id"] == victim:
                        r[end]["w"] = 0

    _edit(d / "objects.json", squash)
    _edit(d / "relationships.json", squash)
    with caplog.at_level(logging.WARNING, logger="datagen.vg"):
        img = next(i for i in load_visual_genome(d) if i.image_id == iid)
    assert victim not in img.objects
    assert all(victim not in (r.subject_id, r.object_id) for r in img.relations)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"(image_id={iid})" in text and f"object_id={victim}" in text and "zero area" in text
    assert "relationship 0: an end has a zero-area box" in text


def test_box_entirely_outside_is_dropped(copy_vg, caplog):
    d = copy_vg()
    _edit(d / "objects.json", lambda data: data[0]["objects"][0].update(x=500))
    with caplog.at_level(logging.WARNING, logger="datagen.vg"):
        imgs = load_visual_genome(d)
    assert len(imgs[0].objects) == len(json.loads((d / "objects.json").read_text())[0]["objects"]) - 1
    assert any(
        "zero area" in r.getMessage() and "entry 0 (image_id=1) object 0" in r.getMessage() for r in caplog.records
    )


def test_duplicate_object_id_is_an_error(copy_vg):
    d = copy_vg()

    def dup(data):
        objs = data[5]["objects"]
        objs[1]["object_id"] = objs[0]["object_id"]

    _edit(d / "objects.json", dup)
    oid = json.loads((d / "objects.json").read_text())[5]["objects"][0]["object_id"]
    with pytest.raises(
        VGFormatError, match=rf"entry 5 \(image_id=6\) object 1: duplicate object_id {oid} in image_id=6"
    ):
        load_visual_genome(d)


def test_read_image_rejects_corrupt_and_truncated(copy_vg):
    d = copy_vg()
    good = d / "images" / "1.jpg"
    data, size = read_image(good, 1)
    assert size == (224, 224) and data == good.read_bytes()
    truncated = d / "images" / "2.jpg"
    truncated.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(ImageFileError, match=r"2\.jpg: image_id=2: cannot read image"):
        read_image(truncated, 2)
    garbage = d / "images" / "3.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageFileError, match=r"3\.jpg: image_id=3: cannot read image"):
        read_image(garbage, 3)


def test_rescale_to_actual_file_size(vg_root, caplog):
    img = load_visual_genome(vg_root, limit=1)[0]
    before = {k: o.box for k, o in img.objects.items()}
    with caplog.at_level(logging.WARNING, logger="datagen.vg"):
        new = rescale_image(img, (448, 112))
    assert (new.width, new.height) == (448, 112) and (img.width, img.height) == (224, 224)
    assert {k: o.box for k, o in img.objects.items()} == before  # the input is not modified
    assert rescale_image(img, (224, 224)) is img
    for k, o in new.objects.items():
        b = before[k]
        assert o.box == pytest.approx((b[0] * 2, b[1] / 2, b[2] * 2, b[3] / 2))
    assert "image_id=1" in caplog.text and "rescaled" in caplog.text
