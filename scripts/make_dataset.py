#!/usr/bin/env python
"""Synthesise an STVQA dataset (the published STVQA-7K schema) from Visual Genome scene graphs.

    python scripts/make_dataset.py --vg-root /data/visual_genome --out data/stvqa
    python scripts/make_dataset.py --synthetic 200 --out data/stvqa-synth

The VG root holds objects.json, relationships.json, image_data.json and an image folder (images/, VG_100K or
VG_100K_2). The streamed builder (default; datagen/stream.py) runs in bounded memory on --workers processes and
resumes a killed build; --writer openai (an LLM on an OpenAI-compatible endpoint writes the questions) and
--verify-model (a VLM keeps the questions it answers right at least once in --verify-tries) add the paper's pipeline.
The output is a Hugging Face DatasetDict (splits train and val) written with save_to_disk, plus a marker file
stvqa_build.json; --overwrite replaces only a folder that holds such a marker, never an input.
Bad input stops with exit code 2 and one line "error: ..." naming the file, entry or key.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import datasets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cluster.verify import VerifierSettings
from datagen.build import BuildSettings, build_stvqa, check_output, count_table
from datagen.llm import EndpointSettings
from datagen.questions import CATEGORIES
from datagen.stream import StreamSettings, build_streamed
from datagen.synthetic import generate_vg_scenes
from datagen.vg import load_visual_genome

log = logging.getLogger("make_dataset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--vg-root", metavar="DIR", help="Visual Genome folder")
    src.add_argument("--synthetic", type=int, metavar="N", help="use N generated VG-format scenes (224x224)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output folder (save_to_disk layout)")
    ap.add_argument("--seed", type=int, default=0, help="seed of question choice, option order and split")
    ap.add_argument("--overwrite", action="store_true", help="replace a dataset this tool wrote earlier at --out")
    ap.add_argument("--relation-fraction", type=float, default=0.5, help="share of relation questions (paper 0.5)")
    ap.add_argument("--per-image", type=int, default=1, help="questions per image (paper 1)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="share of each category in val (paper 0.1)")
    ap.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated categories (default all 9)")
    ap.add_argument("--limit", type=int, help="use only the first N images of image_data.json")
    ap.add_argument("--allow-missing-images", action="store_true", help="skip scene graphs whose image is missing")
    ap.add_argument("--allow-bad-images", action="store_true", help="skip undecodable images with a warning")
    ap.add_argument(
        "--builder", choices=("streamed", "memory"), default="streamed",
        help="streamed: bounded memory, all cores, resumable (default); memory: the older in-memory builder",
    )  # fmt: skip
    ap.add_argument("--workers", type=int, default=0, help="streamed builder: worker processes (0 = one per core)")
    ap.add_argument("--rows-per-shard", type=int, default=1000, help="streamed builder: rows per Arrow file")
    w = ap.add_argument_group("LLM question writer (streamed builder; template questions when not given)")
    w.add_argument("--writer", choices=("template", "openai"), default="template", help="who writes the questions")
    w.add_argument("--writer-model", metavar="NAME", help="model name on the writer endpoint")
    w.add_argument("--writer-url", default="http://localhost:8000/v1", help="OpenAI-compatible base URL")
    w.add_argument("--writer-concurrency", type=int, default=8, help="requests in flight")
    w.add_argument("--writer-timeout", type=float, default=120.0, help="seconds per request")
    w.add_argument("--writer-retries", type=int, default=4, help="retries per request (backoff doubles)")
    w.add_argument("--writer-price", default="0,0", help="price per million prompt,completion tokens (cost)")
    v = ap.add_argument_group("VLM verifier (pass@k, streamed builder)")
    v.add_argument("--verify-model", metavar="PATH_OR_ID", help="verifier model: served name, or a path for the pool")
    v.add_argument("--verify-tries", type=int, default=4, help="answers per question; kept when any is right")
    v.add_argument("--verify-backend", choices=("endpoint", "pool"), default="endpoint", help="where it runs")
    v.add_argument("--verify-url", default="http://localhost:8000/v1", help="OpenAI-compatible base URL")
    v.add_argument("--verify-workers", type=int, default=1, help="pool backend: rollout workers")
    v.add_argument("--verify-engine", choices=("vllm", "hf"), default="vllm", help="pool backend: engine")
    return ap.parse_args(argv)


def llm_settings(a: argparse.Namespace) -> tuple[EndpointSettings | None, VerifierSettings | None]:
    """The writer and verifier settings the options ask for (None when not asked)."""
    writer = verifier = None
    if a.writer == "openai":
        if not a.writer_model:
            raise ValueError("--writer openai needs --writer-model")
        price_in, price_out = (float(x) for x in a.writer_price.split(","))
        writer = EndpointSettings(
            model=a.writer_model, url=a.writer_url, concurrency=a.writer_concurrency, timeout_s=a.writer_timeout,
            retries=a.writer_retries, price_in_per_mtok=price_in, price_out_per_mtok=price_out,
        )  # fmt: skip
    if a.verify_model:
        verifier = VerifierSettings(
            model=a.verify_model, tries=a.verify_tries, backend=a.verify_backend,
            endpoint=EndpointSettings(url=a.verify_url), pool_workers=a.verify_workers, pool_engine=a.verify_engine,
        )  # fmt: skip
    return writer, verifier


def run(a: argparse.Namespace) -> int:
    """Build and write the dataset; returns the exit code."""
    settings = BuildSettings(
        seed=a.seed,
        per_image=a.per_image,
        relation_fraction=a.relation_fraction,
        val_fraction=a.val_fraction,
        categories=tuple(c.strip() for c in a.categories.split(",") if c.strip()),
        allow_bad_images=a.allow_bad_images,
    )
    if a.synthetic is not None and a.synthetic < 1:
        raise ValueError(f"--synthetic must be >= 1, got {a.synthetic}")
    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {a.limit}")
    inputs = [a.vg_root] if a.vg_root else []
    writer, verifier = llm_settings(a)
    if a.builder == "memory" and (writer or verifier):
        raise ValueError("--writer openai and --verify-model need the streamed builder")
    check_output(a.out, inputs, a.overwrite)  # before any work
    with tempfile.TemporaryDirectory(prefix="stvqa-synthetic-vg-") as tmp:
        if a.synthetic:
            root, source = generate_vg_scenes(tmp, a.synthetic, seed=a.seed), f"synthetic:{a.synthetic}"
        else:
            root, source = a.vg_root, os.path.abspath(a.vg_root)
        if a.builder == "memory":
            images = load_visual_genome(root, limit=a.limit, require_images=not a.allow_missing_images)
            build_stvqa(images, a.out, settings=settings, inputs=inputs, overwrite=a.overwrite, source=source)
        else:
            stream = StreamSettings(workers=a.workers, rows_per_shard=a.rows_per_shard)
            build_streamed(
                root, a.out, settings=settings, stream=stream, limit=a.limit, inputs=inputs,
                require_images=not a.allow_missing_images, overwrite=a.overwrite, source=source, writer=writer,
                verifier=verifier,
            )  # fmt: skip
    dd = datasets.load_from_disk(a.out)
    log.info("rows per split and category:\n%s", count_table(dd))
    print(
        f"wrote {sum(len(d) for d in dd.values())} rows "
        f"({', '.join(f'{k} {len(v)}' for k, v in dd.items())}) to {a.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit code 0 on success, 2 with ``error: <one line>`` on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("datasets").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    a = parse_args(argv)
    try:
        return run(a)
    except (ValueError, OSError) as e:  # VGFormatError, BuildError, DatasetError are ValueErrors
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
