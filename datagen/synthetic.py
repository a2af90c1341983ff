"""Generator of small Visual-Genome-format scenes with real images.

Used by the tests and by the CPU default of ``scripts/train.py``.  Each scene
is a picture of coloured rectangles (one per object, each name has its own
colour) and the files are written in exactly the layout
:func:`datagen.vg.load_visual_genome` reads for real VG data.  Relationships
are derived from the geometry, so the labels are consistent with the pixels.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

OBJECT_VOCAB = [
    "cup", "table", "chair", "lamp", "book", "plate", "dog", "cat", "bottle", "clock",
    "window", "door", "car", "tree", "bag", "phone", "ball", "bench", "sign", "vase",
]

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]
COLORS = dict(zip(OBJECT_VOCAB, _PALETTE))


def _geometric_relations(objs: list[dict]) -> list[tuple[int, str, int]]:
    rels = []
    for a in objs:
        for b in objs:
            if a is b:
                continue
            acx, acy = a["x"] + a["w"] / 2, a["y"] + a["h"] / 2
            bcx, bcy = b["x"] + b["w"] / 2, b["y"] + b["h"] / 2
            dx, dy = bcx - acx, bcy - acy
            if a["x"] + a["w"] <= b["x"] and abs(dy) < max(a["h"], b["h"]):
                rels.append((a["object_id"], "left of", b["object_id"]))
            elif a["y"] + a["h"] <= b["y"] and abs(dx) < max(a["w"], b["w"]):
                if b["y"] - (a["y"] + a["h"]) <= 4:
                    rels.append((a["object_id"], "on", b["object_id"]))
                else:
                    rels.append((a["object_id"], "above", b["object_id"]))
            elif (dx * dx + dy * dy) ** 0.5 < 60 and a["object_id"] < b["object_id"]:
                rels.append((a["object_id"], "near", b["object_id"]))
    return rels


def generate_vg_scenes(
    out_dir: str | os.PathLike,
    n_images: int = 16,
    *,
    seed: int = 0,
    size: tuple[int, int] = (224, 224),
    min_objects: int = 3,
    max_objects: int = 6,
    max_relations: int = 8,
) -> Path:
    """Write ``n_images`` synthetic scenes to ``out_dir`` in VG format."""
    from PIL import Image, ImageDraw

    if n_images < 1:
        raise ValueError("n_images must be >= 1")
    if not (1 <= min_objects <= max_objects):
        raise ValueError("need 1 <= min_objects <= max_objects")
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    W, H = size
    image_data, objects_json, rels_json = [], [], []
    next_obj = 1000
    next_rel = 1
    for k in range(n_images):
        iid = k + 1
        img = Image.new("RGB", (W, H), (245, 245, 240))
        draw = ImageDraw.Draw(img)
        n = rng.randint(min_objects, max_objects)
        objs: list[dict] = []
        attempts = 0
        while len(objs) < n and attempts < 200:
            attempts += 1
            w = rng.randint(W // 10, W // 3)
            h = rng.randint(H // 10, H // 3)
            x = rng.randint(0, W - w - 1)
            y = rng.randint(0, H - h - 1)
            if any(not (x + w <= o["x"] or o["x"] + o["w"] <= x or y + h <= o["y"] or o["y"] + o["h"] <= y) for o in objs):
                continue
            name = rng.choice(OBJECT_VOCAB)
            objs.append({"object_id": next_obj, "x": x, "y": y, "w": w, "h": h, "names": [name], "synsets": []})
            next_obj += 1
        for o in objs:
            c = COLORS[o["names"][0]]
            draw.rectangle([o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]], fill=c, outline=(0, 0, 0))
        img.save(out / "images" / f"{iid}.jpg", quality=92)
        rels = _geometric_relations(objs)
        rng.shuffle(rels)
        by_id = {o["object_id"]: o for o in objs}
        rel_entries = []
        for s, p, o in rels[:max_relations]:
            rel_entries.append(
                {
                    "relationship_id": next_rel,
                    "predicate": p,
                    "synsets": [],
                    "subject": {k2: v for k2, v in by_id[s].items() if k2 != "synsets"},
                    "object": {k2: v for k2, v in by_id[o].items() if k2 != "synsets"},
                }
            )
            next_rel += 1
        image_data.append({"image_id": iid, "width": W, "height": H, "url": f"synthetic://{iid}.jpg"})
        objects_json.append({"image_id": iid, "objects": objs})
        rels_json.append({"image_id": iid, "relationships": rel_entries})
    for name, data in (("image_data", image_data), ("objects", objects_json), ("relationships", rels_json)):
        with open(out / f"{name}.json", "w") as fh:
            json.dump(data, fh)
    return out
