#!/usr/bin/env python
"""Synthesise an STVQA dataset from Visual Genome scene graphs.

    python scripts/make_dataset.py --vg-root /data/visual_genome --out data/stvqa
    python scripts/make_dataset.py --synthetic 200 --out data/stvqa-synth

The VG root holds objects.json, relationships.json, image_data.json and an
image folder (images/, VG_100K or VG_100K_2).  Output is a Hugging Face
DatasetDict (train/validation) written with save_to_disk.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--vg-root", help="Visual Genome folder")
    src.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic VG-format scenes first")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, help="use only the first N images")
    ap.add_argument("--max-per-image", type=int, default=4)
    ap.add_argument("--max-scene-objects", type=int, default=6)
    ap.add_argument("--types", default=None, help="comma-separated question types (default: all)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--allow-missing-images", action="store_true", help="skip scene graphs whose image file is missing")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)

    from datagen.build import build_stvqa
    from datagen.questions import QUESTION_TYPES
    from datagen.vg import VGFormatError, load_visual_genome

    try:
        root = a.vg_root
        if a.synthetic:
            from datagen.synthetic import generate_vg_scenes

            root = generate_vg_scenes(os.path.join(a.out + "-vg"), a.synthetic, seed=a.seed)
        images = load_visual_genome(root, limit=a.limit, require_images=not a.allow_missing_images)
        types = tuple(t.strip() for t in a.types.split(",")) if a.types else QUESTION_TYPES
        dd = build_stvqa(
            images, a.out, seed=a.seed, max_per_image=a.max_per_image, types=types, val_fraction=a.val_fraction,
            overwrite=a.overwrite, max_scene_objects=a.max_scene_objects,
        )
    except (VGFormatError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print({k: len(v) for k, v in dd.items()}, "->", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
