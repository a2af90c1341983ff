"""Write synthesised STVQA samples as a Hugging Face ``datasets`` dataset."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from datagen.questions import QUESTION_TYPES, synthesize_questions
from datagen.vg import VGImage, load_visual_genome


def features():
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "image_id": Value("int64"),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "question_type": Value("string"),
            "question": Value("string"),
            "options": List(Value("string")),
            "answer": Value("string"),
            "answer_text": Value("string"),
            "prompt": Value("string"),
            "gt_objects": List({"id": Value("string"), "name": Value("string"), "bbox": List(Value("float32"))}),
            "gt_relationships": List(
                {"subject": Value("string"), "predicate": Value("string"), "object": Value("string")}
            ),
        }
    )


def _split_of(image_id: int, val_fraction: float) -> str:
    h = int(hashlib.sha1(str(image_id).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "train"


def build_stvqa(
    images: list[VGImage],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    max_per_image: int = 4,
    types: tuple[str, ...] = QUESTION_TYPES,
    val_fraction: float = 0.1,
    overwrite: bool = False,
    max_scene_objects: int = 6,
):
    """Synthesise questions for ``images`` and save a DatasetDict
    (``train`` / ``validation``, split by image) with ``save_to_disk``."""
    from datasets import Dataset, DatasetDict

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass overwrite=True / --overwrite to replace it")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    vocabulary = sorted({o.name for img in images for o in img.objects.values()})
    rng = random.Random(seed)
    rows: dict[str, list[dict]] = {"train": [], "validation": []}
    for img in images:
        if img.image_path is None:
            continue
        for k, s in enumerate(synthesize_questions(
            img, rng, types=types, max_per_image=max_per_image, vocabulary=vocabulary, max_objects=max_scene_objects
        )):
            rows[_split_of(img.image_id, val_fraction)].append(
                {
                    "id": f"{img.image_id}-{k}",
                    "image_id": img.image_id,
                    "image": img.image_path,
                    "width": img.width,
                    "height": img.height,
                    "question_type": s.question_type,
                    "question": s.question,
                    "options": s.options,
                    "answer": s.answer,
                    "answer_text": s.answer_text,
                    "prompt": s.prompt_text(),
                    "gt_objects": s.gt_objects,
                    "gt_relationships": s.gt_relationships,
                }
            )
    if not rows["train"]:
        raise ValueError("no questions could be synthesised from the given scene graphs (too few objects?)")
    feats = features()
    dd = DatasetDict({k: Dataset.from_list(v, features=feats) for k, v in rows.items() if v})
    if out.exists() and overwrite:
        import shutil

        shutil.rmtree(out)
    dd.save_to_disk(str(out))
    return dd


def build_from_vg(root, out_dir, *, limit=None, require_images=True, **kw):
    return build_stvqa(load_visual_genome(root, limit=limit, require_images=require_images), out_dir, **kw)


def load_stvqa(path: str | os.PathLike, split: str = "train"):
    from datasets import load_from_disk

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset {p} not found; build it with scripts/make_dataset.py")
    dd = load_from_disk(str(p))
    if hasattr(dd, "keys"):
        if split not in dd:
            raise KeyError(f"dataset {p} has no split '{split}' (has {list(dd.keys())})")
        ds = dd[split]
    else:
        ds = dd
    need = {"image", "prompt", "answer", "gt_objects", "gt_relationships"}
    missing = need - set(ds.column_names)
    if missing:
        raise ValueError(f"dataset {p} is not an STVQA dataset: missing columns {sorted(missing)}")
    return ds
