"""Generator of small Visual-Genome-format scenes with real images.

Used by the tests and by the CPU default of ``scripts/train.py``. Each scene is a picture of coloured rectangles
(one colour per object name) written in exactly the layout :func:`datagen.vg.load_visual_genome` reads for real VG
data. The scenes are made so that all nine STVQA categories can be asked about them: most images hold a ``person``
with an object within reach, some names repeat (counting), boxes have varied aspect ratios (orientation), and some
objects rest on others (the ``on`` relation). Relationships are derived from the geometry with
:func:`datagen.geometry.relation_holds`, so the labels agree with the pixels.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

from datagen.geometry import relation_holds

OBJECT_VOCAB = [
    "cup", "table", "chair", "lamp", "book", "plate", "dog", "cat", "bottle", "clock",
    "window", "door", "car", "tree", "bag", "phone", "ball", "bench", "sign", "vase", "person",
]  # fmt: skip
"""Object names the synthetic scenes use (also part of the tiny tokenizer's training text)."""

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (40, 40, 40),
]  # fmt: skip
COLORS = dict(zip(OBJECT_VOCAB, _PALETTE))
"""Fill colour of each object name."""

MARKER = "synthetic_vg.json"
"""File written next to the scenes; a non-empty folder without it is never written into."""

_RELATION_ORDER = ("on", "under", "left of", "right of", "above", "below", "near")
_THINGS = [n for n in OBJECT_VOCAB if n != "person"]


def _free(box: tuple[int, int, int, int], placed: list[dict], size: tuple[int, int]) -> bool:
    x1, y1, x2, y2 = box
    if x1 < 0 or y1 < 0 or x2 > size[0] or y2 > size[1] or x2 - x1 < 4 or y2 - y1 < 4:
        return False
    return all(x2 <= o["x"] or o["x"] + o["w"] <= x1 or y2 <= o["y"] or o["y"] + o["h"] <= y1 for o in placed)


def _random_box(rng: random.Random, size: tuple[int, int]) -> tuple[int, int, int, int]:
    W, H = size
    shape = rng.choice(("wide", "tall", "square"))
    base = rng.randint(min(W, H) // 10, min(W, H) // 4)
    if shape == "wide":
        w, h = int(base * rng.uniform(1.7, 2.6)), base
    elif shape == "tall":
        w, h = base, int(base * rng.uniform(1.7, 2.6))
    else:
        w, h = base, int(base * rng.uniform(0.85, 1.15))
    w, h = min(w, W - 2), min(h, H - 2)
    x, y = rng.randint(0, W - w - 1), rng.randint(0, H - h - 1)
    return (x, y, x + w, y + h)


def _scene_objects(rng: random.Random, size: tuple[int, int], n: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Pick names and boxes for one scene (no two boxes overlap; some touch for ``on``)."""
    W, H = size
    placed: list[dict] = []

    def add(name, box):
        placed.append({"name": name, "x": box[0], "y": box[1], "w": box[2] - box[0], "h": box[3] - box[1]})

    if rng.random() < 0.7:  # a person and something within reach
        for _ in range(50):
            ph = rng.randint(H // 3, H // 2)
            pw = max(8, ph // 3)
            px, py = rng.randint(0, W - pw - 1), rng.randint(0, H - ph - 1)
            if _free((px, py, px + pw, py + ph), placed, size):
                add("person", (px, py, px + pw, py + ph))
                break
        if placed:
            p = placed[0]
            for _ in range(50):
                tw, th = rng.randint(W // 14, W // 7), rng.randint(H // 14, H // 7)
                gap = rng.randint(0, max(1, int(0.2 * p["h"])))
                tx = p["x"] + p["w"] + gap if rng.random() < 0.5 else p["x"] - gap - tw
                ty = rng.randint(p["y"], max(p["y"], p["y"] + p["h"] - th))
                if _free((tx, ty, tx + tw, ty + th), placed, size):
                    add(rng.choice(_THINGS), (tx, ty, tx + tw, ty + th))
                    break
    repeat = rng.choice(_THINGS) if rng.random() < 0.5 else None
    attempts = 0
    while len(placed) < n and attempts < 300:
        attempts += 1
        name = repeat if repeat and rng.random() < 0.35 else rng.choice(_THINGS)
        if placed and rng.random() < 0.2:  # rest a small object on top of a placed one
            b = rng.choice(placed)
            w = rng.randint(max(4, b["w"] // 4), max(5, b["w"] // 2))
            h = rng.randint(max(4, H // 14), max(5, H // 7))
            x = rng.randint(b["x"], max(b["x"], b["x"] + b["w"] - w))
            box = (x, b["y"] - h, x + w, b["y"])
        else:
            box = _random_box(rng, size)
        if _free(box, placed, size):
            add(name, box)
    return [(o["name"], (o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"])) for o in placed]


def _relations(objs: list[dict], size: tuple[int, int]) -> list[tuple[int, str, int]]:
    """At most one geometric relation per ordered pair, the first of ``_RELATION_ORDER`` that holds strictly."""
    rels = []
    for a in objs:
        for b in objs:
            if a is b:
                continue
            ba = (a["x"], a["y"], a["x"] + a["w"], a["y"] + a["h"])
            bb = (b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"])
            for pred in _RELATION_ORDER:
                if relation_holds(pred, ba, bb, size):
                    rels.append((a["object_id"], pred, b["object_id"]))
                    break
    return rels


def generate_vg_scenes(
    out_dir: str | os.PathLike,
    n_images: int = 16,
    *,
    seed: int = 0,
    size: tuple[int, int] = (224, 224),
    min_objects: int = 4,
    max_objects: int = 8,
    max_relations: int = 10,
) -> Path:
    """Write ``n_images`` synthetic scenes of ``size`` = ``(W, H)`` pixels to ``out_dir`` in VG format.

    ``out_dir`` gets ``image_data.json``, ``objects.json``, ``relationships.json``, ``images/<id>.jpg`` and a
    marker file; a non-empty folder that does not hold earlier synthetic scenes is refused (``FileExistsError``).
    The same arguments always give the same files. Returns ``out_dir`` as a Path.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if not (1 <= min_objects <= max_objects):
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    W, H = size
    if W < 32 or H < 32:
        raise ValueError(f"synthetic images must be at least 32x32 pixels, got {W}x{H}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise FileExistsError(f"{out} exists and does not hold synthetic VG scenes; refusing to write into it")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    image_data, objects_json, rels_json = [], [], []
    next_obj, next_rel = 1000, 1
    for k in range(n_images):
        iid = k + 1
        objs = []
        for name, (x1, y1, x2, y2) in _scene_objects(rng, size, rng.randint(min_objects, max_objects)):
            objs.append({"object_id": next_obj, "x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1, "names": [name]})
            next_obj += 1
        img = Image.new("RGB", (W, H), (245, 245, 240))
        draw = ImageDraw.Draw(img)
        for o in objs:
            box = [o["x"], o["y"], o["x"] + o["w"] - 1, o["y"] + o["h"] - 1]
            draw.rectangle(box, fill=COLORS[o["names"][0]], outline=(0, 0, 0))
        img.save(out / "images" / f"{iid}.jpg", quality=90)
        rels = _relations(objs, size)
        rng.shuffle(rels)
        by_id = {o["object_id"]: o for o in objs}
        entries = []
        for s, p, o in rels[:max_relations]:
            entries.append(
                {"relationship_id": next_rel, "predicate": p, "subject": dict(by_id[s]), "object": dict(by_id[o])}
            )
            next_rel += 1
        image_data.append({"image_id": iid, "width": W, "height": H, "url": f"synthetic://{iid}.jpg"})
        objects_json.append({"image_id": iid, "objects": objs})
        rels_json.append({"image_id": iid, "relationships": entries})
    for name, data in (("image_data", image_data), ("objects", objects_json), ("relationships", rels_json)):
        (out / f"{name}.json").write_text(json.dumps(data))
    settings = {"n_images": n_images, "seed": seed, "size": [W, H], "min_objects": min_objects}
    settings.update(max_objects=max_objects, max_relations=max_relations)
    (out / MARKER).write_text(json.dumps(settings))
    return out


VG_SCALE_NAMES = [
    "man", "woman", "person", "boy", "girl", "player", "tree", "building", "window", "shirt", "wall", "sign", "car",
    "table", "chair", "cup", "plate", "bottle", "lamp", "book", "dog", "cat", "horse", "bus", "truck", "pole",
    "street", "sidewalk", "grass", "sky", "cloud", "hat", "jacket", "pants", "shoe", "bag", "phone", "clock",
    "door", "fence", "bench", "light", "leaf", "hair", "hand", "head", "ear", "eye", "nose", "mouth", "wheel",
    "tire", "plane", "train", "boat", "water", "rock", "umbrella", "kite", "bird", "elephant", "giraffe", "zebra",
    "bowl", "pizza", "sandwich", "banana", "orange", "vase", "flower", "pillow", "bed", "couch", "laptop", "screen",
    "keyboard", "mirror", "sink", "toilet", "tile", "floor", "roof", "helmet", "glove", "racket", "ball", "skateboard",
    "surfboard", "snow", "ski", "wave", "sand", "shadow", "letter", "number", "logo", "stripe", "post", "tower",
]  # fmt: skip
"""Object names of the VG-scale generator (a Visual Genome-like mix, people included for reach questions)."""

VG_SCALE_PREDICATES = [
    "on", "has", "wearing", "of", "in", "near", "behind", "holding", "next to", "above", "under", "by", "in front of",
    "on top of", "beside", "sitting on", "standing on", "with", "inside", "below", "left of", "right of",
]  # fmt: skip
"""Predicates of the VG-scale generator (common VG predicates, geometric and not)."""


def _vg_scale_jpeg(rng: random.Random, size: tuple[int, int], target_kb: int) -> bytes:
    """A JPEG of about ``target_kb`` KB: coloured rectangles over a noisy background (VG photos are ~170 KB)."""
    import io

    W, H = size
    noise = bytes(rng.getrandbits(8) for _ in range(W * H * 3))
    img = Image.frombytes("RGB", (W, H), noise)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(W), rng.randrange(H)
        draw.rectangle([x, y, x + rng.randrange(20, 160), y + rng.randrange(20, 120)], fill=rng.choice(_PALETTE))
    best = b""
    for quality in (100, 98, 96, 94, 92, 90, 85, 80, 75, 70, 60, 50, 40, 30):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        best = buf.getvalue()
        if len(best) <= target_kb * 1024:
            break
    return best


_SYLLABLES = ("ba", "ko", "ri", "tu", "me", "sa", "lo", "ni", "ve", "da", "pu", "ge", "zo", "fi", "ha", "mu")


def _long_tail_name(k: int) -> str:
    """The ``k``-th rare name (letters only): VG has about 75,000 distinct object names, most of them rare."""
    word = ""
    while True:
        word += _SYLLABLES[k % len(_SYLLABLES)]
        k //= len(_SYLLABLES)
        if not k:
            return word + "x"


def _vg_object(rng: random.Random, oid: int, size: tuple[int, int], long_tail: int) -> dict:
    W, H = size
    w, h = rng.randint(8, W // 2), rng.randint(8, H // 2)
    name = rng.choice(VG_SCALE_NAMES) if rng.random() >= 0.08 else _long_tail_name(rng.randrange(long_tail))
    return {
        "synsets": [f"{name}.n.01"],
        "h": h,
        "object_id": oid,
        "names": [name],
        "w": w,
        "y": rng.randint(0, H - h),
        "x": rng.randint(0, W - w),
    }


def generate_vg_scale_input(
    out_dir: str | os.PathLike,
    n_images: int,
    *,
    seed: int = 0,
    objects_per_image: int = 35,
    relations_per_image: int = 21,
    size: tuple[int, int] = (500, 375),
    distinct_images: int = 8,
    image_kb: int = 170,
) -> Path:
    """Write a Visual Genome-shaped input of ``n_images`` images at VG density (benchmarks of the builder).

    Same JSON layout as VG v1.4 (``image_data.json`` with ``image_id``/``url``/``width``/``height``,
    ``objects.json`` entries with ``synsets``/``names``/``object_id``/``x``/``y``/``w``/``h``, ``relationships.json``
    entries whose ``subject``/``object`` repeat the full object); about ``objects_per_image`` objects and
    ``relations_per_image`` relationships per image (random, +-30%); 8% of the objects carry one of
    ``0.7 * n_images`` rare names (VG's long tail of names). The JSON files are written entry by entry
    (memory does not grow with ``n_images``). ``images/<id>.jpg`` are symbolic links to ``distinct_images`` real
    JPEGs of ``size`` and about ``image_kb`` KB in ``jpegs/`` (so the input costs little disk). Refuses a non-empty
    folder that does not hold an earlier such input. Returns ``out_dir``.
    """
    import orjson

    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise FileExistsError(f"{out} exists and does not hold synthetic VG scenes; refusing to write into it")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "jpegs").mkdir(exist_ok=True)
    rng = random.Random(seed)
    sources = []
    for k in range(distinct_images):
        src = out / "jpegs" / f"{k}.jpg"
        src.write_bytes(_vg_scale_jpeg(rng, size, image_kb))
        sources.append(src)
    W, H = size
    next_obj, next_rel = 1, 1
    files = {name: open(out / f"{name}.json", "wb") for name in ("image_data", "objects", "relationships")}
    try:
        for fh in files.values():
            fh.write(b"[")
        for k in range(n_images):
            iid = k + 1
            sep = b", " if k else b""
            n_obj = max(2, round(objects_per_image * rng.uniform(0.7, 1.3)))
            objs = [_vg_object(rng, next_obj + j, size, max(1, 7 * n_images // 10)) for j in range(n_obj)]
            next_obj += n_obj
            rels = []
            for _ in range(max(1, round(relations_per_image * rng.uniform(0.7, 1.3)))):
                s, o = rng.sample(objs, 2)
                pred = rng.choice(VG_SCALE_PREDICATES)
                rels.append(
                    {"predicate": pred.upper() if rng.random() < 0.1 else pred, "object": o,
                     "relationship_id": next_rel, "synsets": [f"{pred.split()[0]}.r.01"], "subject": s}
                )  # fmt: skip
                next_rel += 1
            url = f"https://cs.stanford.edu/people/rak248/VG_100K/{iid}.jpg"
            info = {"width": W, "url": url, "height": H, "image_id": iid, "coco_id": None, "flickr_id": None}
            files["image_data"].write(sep + orjson.dumps(info))
            files["objects"].write(sep + orjson.dumps({"image_id": iid, "objects": objs, "image_url": url}))
            files["relationships"].write(sep + orjson.dumps({"relationships": rels, "image_id": iid}))
            link = out / "images" / f"{iid}.jpg"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(sources[k % distinct_images], link.parent))
        for fh in files.values():
            fh.write(b"]")
    finally:
        for fh in files.values():
            fh.close()
    settings = {"n_images": n_images, "seed": seed, "size": [W, H], "objects_per_image": objects_per_image}
    settings.update(relations_per_image=relations_per_image, kind="vg-scale")
    (out / MARKER).write_text(json.dumps(settings))
    return out
