"""The STVQA dataset schema, its loader and the per-row task fields training needs.

The schema is the one of the published STVQA-7K (``hunarbatra/STVQA-7K``; splits ``train`` and ``val``):

=============================  =================================================================================
column                         content
=============================  =================================================================================
``image_id``                   source image id (string)
``images``                     list with the one image
``problem``                    the full training prompt (instruction, ``Image size: (W x H)``, question, options)
``question_only``              the question without options
``question_with_options``      the question, ``Options:`` and one ``(A) text`` line per option
``options``                    option texts without letters
``answer``                     ``<scene>{json}</scene>\\n<answer>B</answer>``
``answer_only``                ``B``
``answer_text``                ``<scene>{json}</scene>\\n<answer>behind</answer>``
``answer_text_only``           ``behind``
``answer_option_text``         ``<scene>{json}</scene>\\n<answer>(B) behind</answer>`` (the reward's ground truth)
``answer_option_text_only``    ``(B) behind``
``category``                   one of the nine categories
``level``                      easy / medium / hard
``rating``                     difficulty 1-10
=============================  =================================================================================

The scene JSON is ``{"objects": [{"id": "cup.1", "bbox": [x1, y1, x2, y2]}], "relationships": [{"subject": ...,
"predicate": ..., "object": ...}]}`` with pixel boxes of the original image.

:func:`load_stvqa` reads a split from a ``save_to_disk`` folder, a folder of parquet or arrow files (e.g. a local
copy of the hub repository), a single parquet/arrow file or a Hugging Face dataset id. Images come back undecoded
(``{"bytes", "path"}``) so that one broken image cannot stop an iteration; :func:`task_fields` decodes and checks
one row and raises :class:`DatasetError` naming the row and field when something is wrong.

:func:`build_dataset` is the one-call builder the trainer uses: Visual Genome (or generated synthetic scenes) in,
a ``save_to_disk`` folder of this schema out (details in :mod:`datagen.build`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset
from datasets import Image as HFImage
from datasets import List as HFList
from PIL import Image

from datagen.build import BuildError, BuildSettings, build_from_vg, check_output
from datagen.schema import COLUMNS, SPLIT_ALIASES, SPLITS, TASK_COLUMNS, DatasetError, features
from datagen.synthetic import generate_vg_scenes

__all__ = [
    "COLUMNS",
    "SPLITS",
    "SPLIT_ALIASES",
    "TASK_COLUMNS",
    "DatasetError",
    "build_dataset",
    "features",
    "load_stvqa",
    "split_ground_truth",
    "task_fields",
]

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SCENE = re.compile(r"<scene>(.*?)</scene>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _split_of_file(path: Path, root: Path) -> str | None:
    """The split a data file holds, from its name (``train-00000-of-00001.parquet``, ``val.arrow``) or its folder
    (``train/data-00000-of-00001.arrow``)."""
    prefix = re.split(r"[-_.]", path.name, maxsplit=1)[0]
    if prefix and prefix != "data" and not prefix.isdigit():
        return prefix
    parent = path.parent
    if parent != root and parent.name not in ("data", ""):
        return parent.name
    return None


def _resolve_split(split: str, available: list[str], source: str) -> str:
    if split in available:
        return split
    alias = SPLIT_ALIASES.get(split)
    if alias in available:
        log.info("%s: split %r not found, using %r", source, split, alias)
        return alias
    raise DatasetError(
        f"{source}: unknown split {split!r}; available splits: {', '.join(sorted(available)) or 'none'}"
    )


def _load_files(files: list[Path], source: str) -> Dataset:
    kinds = {f.suffix for f in files}
    if len(kinds) > 1:
        raise DatasetError(f"{source}: mixes {' and '.join(sorted(kinds))} files for one split; keep one format")
    try:
        if ".parquet" in kinds:
            return Dataset.from_parquet([str(f) for f in files])
        parts = [Dataset.from_file(str(f)) for f in files]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except Exception as e:  # pyarrow / datasets raise many types for unreadable files
        raise DatasetError(f"{source}: cannot read {', '.join(str(f) for f in files)} ({_one_line(e)})") from e


def _load_directory(p: Path, split: str) -> Dataset:
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(p))
        except Exception as e:  # a damaged save_to_disk folder
            raise DatasetError(f"{p}: cannot load the saved dataset ({_one_line(e)})") from e
        if isinstance(loaded, datasets.DatasetDict):
            return loaded[_resolve_split(split, list(loaded.keys()), str(p))]
        log.info("%s holds a single dataset without split names; using it as split %r", p, split)
        return loaded
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and f.suffix in (".parquet", ".arrow")
        and not any(x.startswith(".") for x in f.relative_to(p).parts)
    )
    if not files:
        raise DatasetError(f"{p}: no dataset here (no dataset_dict.json, no .parquet or .arrow files)")
    by_split: dict[str, list[Path]] = {}
    for f in files:
        name = _split_of_file(f, p)
        if name is None:
            raise DatasetError(
                f"{f}: cannot tell which split this file holds; name it like train-00000-of-00001.parquet"
            )
        by_split.setdefault(name, []).append(f)
    return _load_files(by_split[_resolve_split(split, list(by_split), str(p))], str(p))


def _load_file(p: Path, split: str) -> Dataset:
    if p.suffix not in (".parquet", ".arrow"):
        raise DatasetError(f"{p}: not a dataset file (expected .parquet or .arrow, or a folder)")
    name = _split_of_file(p, p.parent)
    if name in ("train", "val", "validation", "test") and name != split and SPLIT_ALIASES.get(split) != name:
        raise DatasetError(f"{p}: this file holds split {name!r}, not {split!r}")
    return _load_files([p], str(p))


def _load_hub(source: str, split: str) -> Dataset:
    try:
        return datasets.load_dataset(source, split=split)
    except ValueError as e:  # datasets reports an unknown split as a ValueError
        if "split" not in str(e).lower():
            raise DatasetError(f"{source}: cannot load from the Hugging Face hub ({_one_line(e)})") from e
        first = e
    except Exception as e:  # network, authentication, missing repository, ...
        raise DatasetError(
            f"{source}: not a local path, and loading it from the Hugging Face hub failed ({_one_line(e)})"
        ) from e
    try:
        available = list(datasets.get_dataset_split_names(source))
    except Exception:  # noqa: BLE001 - listing is best effort; the load error is the one to report
        available = None
    if available is None:
        raise DatasetError(f"{source}: unknown split {split!r} ({_one_line(first)})") from first
    resolved = _resolve_split(split, available, source)
    try:
        return datasets.load_dataset(source, split=resolved)
    except Exception as e:  # as above
        raise DatasetError(f"{source}: cannot load split {resolved!r} from the hub ({_one_line(e)})") from e


def _undecoded(ds: Dataset) -> Dataset:
    """The same rows with the ``images`` column left undecoded (a metadata change: no data is copied or cached)."""
    feat = ds.features.get("images")
    if isinstance(feat, HFImage):
        new = HFImage(decode=False)
    elif isinstance(getattr(feat, "feature", None), HFImage):
        new = HFList(HFImage(decode=False))
    else:
        return ds
    info = ds.info.copy()
    info.features = ds.features.copy()
    info.features["images"] = new
    return Dataset(ds.data, info=info, split=ds.split, indices_table=ds._indices)


def load_stvqa(source: str | os.PathLike, split: str = "train", *, decode_images: bool = False) -> Dataset:
    """Load one split of an STVQA dataset.

    ``source`` is a folder written by ``DatasetDict.save_to_disk``, a folder of parquet or arrow files whose names
    or sub-folders tell the split (``data/train-00000-of-00001.parquet``, ``train/data-00000-of-00001.arrow``), a
    single ``.parquet``/``.arrow`` file, or a Hugging Face dataset id such as ``hunarbatra/STVQA-7K``. ``split`` is
    ``train`` or ``val`` (``validation`` is accepted for ``val`` and vice versa). The columns of
    :data:`TASK_COLUMNS` must be present. Images stay undecoded unless ``decode_images``.

    Raises :class:`DatasetError` (one line, naming the path or id): not found, unknown split (listing the available
    ones), missing columns (naming them).
    """
    src = str(source)
    p = Path(source)
    if p.is_dir():
        ds = _load_directory(p, split)
    elif p.is_file():
        ds = _load_file(p, split)
    elif _HUB_ID.match(src) and not src.startswith((".", "/")):
        ds = _load_hub(src, split)
    else:
        raise DatasetError(f"{src}: no such file or directory (and not a Hugging Face dataset id like owner/name)")
    missing = [c for c in TASK_COLUMNS if c not in ds.column_names]
    if missing:
        hint = (
            " (an older datagen format; rebuild with scripts/make_dataset.py)"
            if "gt_objects" in ds.column_names
            else ""
        )
        raise DatasetError(f"{src} split {split!r}: missing column(s) {', '.join(missing)}{hint}")
    return ds if decode_images else _undecoded(ds)


def _decode(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        value.load()
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            im = Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            im = Image.open(value["path"])
        else:
            raise ValueError("image entry has neither bytes nor path")
    elif isinstance(value, (str, os.PathLike)):
        im = Image.open(value)
    elif isinstance(value, (bytes, bytearray)):
        im = Image.open(io.BytesIO(value))
    else:
        raise TypeError(f"unsupported image value of type {type(value).__name__}")
    im.load()
    return im


def split_ground_truth(text: str) -> tuple[dict, str]:
    """``(scene, answer)`` of an ``answer_option_text`` value: the parsed ``<scene>`` JSON and the ``<answer>`` text
    (``(B) behind``). Raises ValueError when a block is missing or is not JSON, TypeError when the scene is not a
    JSON object."""
    m_scene, m_answer = _SCENE.search(text), _ANSWER.search(text)
    if not m_scene or not m_answer:
        raise ValueError("needs a <scene>...</scene> and an <answer>...</answer> block")
    scene = json.loads(m_scene.group(1))
    if not isinstance(scene, dict):
        raise TypeError("the <scene> block is not a JSON object")
    return scene, m_answer.group(1).strip()


def task_fields(row: dict) -> dict:
    """What training needs from one STVQA row.

    Returns ``id`` (``<image_id>-<category>``), ``question`` (``question_only``), ``options`` (list of str),
    ``image`` (the first of ``images``, decoded, RGB), ``image_size`` (its ``(W, H)``: the original size),
    ``ground_truth`` (``answer_option_text``) and ``category``. A broken row raises :class:`DatasetError` naming the
    row id and the field, so the caller can skip and report it.
    """
    rid = row.get("image_id")
    where = f"row image_id={rid!r}"
    if rid is None or str(rid).strip() == "":
        raise DatasetError(f"{where}: field 'image_id' is empty")
    for key in TASK_COLUMNS:
        if key not in row:
            raise DatasetError(f"{where}: missing field {key!r}")
    question, options, category = row["question_only"], row["options"], row["category"]
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: field 'question_only' must be a non-empty string")
    if not isinstance(options, list) or not 2 <= len(options) <= 10 or not all(isinstance(o, str) for o in options):
        raise DatasetError(f"{where}: field 'options' must be a list of 2 to 10 strings, got {options!r}")
    if not isinstance(category, str) or not category:
        raise DatasetError(f"{where}: field 'category' must be a non-empty string")
    gt = row["answer_option_text"]
    if not isinstance(gt, str):
        raise DatasetError(f"{where}: field 'answer_option_text' must be a string")
    try:
        split_ground_truth(gt)
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise DatasetError(f"{where}: field 'answer_option_text' is not a ground truth ({_one_line(e)})") from e
    images = row["images"]
    first = images[0] if isinstance(images, list) and images else images if not isinstance(images, list) else None
    if first is None:
        raise DatasetError(f"{where}: field 'images' holds no image")
    try:
        image = _decode(first).convert("RGB")
    except Exception as e:  # PIL raises many types for broken data
        raise DatasetError(f"{where}: field 'images' cannot be decoded ({_one_line(e)})") from e
    return {
        "id": f"{rid}-{category}",
        "question": question.strip(),
        "options": list(options),
        "image": image,
        "image_size": image.size,
        "ground_truth": gt,
        "category": category,
    }


def build_dataset(
    out: str | os.PathLike,
    *,
    vg_root: str | os.PathLike | None = None,
    synthetic_images: int = 200,
    synthetic_root: str | os.PathLike | None = None,
    seed: int = 0,
    relation_fraction: float = 0.5,
    per_image: int = 1,
    val_fraction: float = 0.1,
    overwrite: bool = False,
    allow_missing_images: bool = False,
    allow_bad_images: bool = False,
) -> Path:
    """Build an STVQA dataset into ``out`` (``save_to_disk`` layout, splits ``train`` and ``val``); returns ``out``.

    The source is the Visual Genome folder ``vg_root``, or else ``synthetic_images`` generated scenes written to
    ``synthetic_root`` (kept for inspection; a temporary folder when None). The other arguments are those of
    :class:`datagen.build.BuildSettings` and :func:`datagen.build.build_from_vg`. Bad input raises a one-line
    error (:class:`DatasetError` subclasses, :class:`datagen.vg.VGFormatError`, ``FileNotFoundError``); an existing
    ``out`` is only replaced with ``overwrite`` and only when this tool wrote it.
    """
    kwargs = {
        "seed": seed,
        "per_image": per_image,
        "relation_fraction": relation_fraction,
        "val_fraction": val_fraction,
        "require_images": not allow_missing_images,
        "allow_bad_images": allow_bad_images,
        "overwrite": overwrite,
    }
    # settings and output are checked before any scene is generated
    BuildSettings(seed=seed, per_image=per_image, relation_fraction=relation_fraction, val_fraction=val_fraction)
    check_output(out, [vg_root] if vg_root is not None else [], overwrite)
    if vg_root is not None:
        build_from_vg(vg_root, out, **kwargs)
        return Path(out)
    if synthetic_images < 1:
        raise BuildError(f"synthetic_images must be >= 1, got {synthetic_images}")
    if synthetic_root is not None:
        build_from_vg(generate_vg_scenes(synthetic_root, synthetic_images, seed=seed), out, **kwargs)
        return Path(out)
    with tempfile.TemporaryDirectory(prefix="stvqa-synthetic-vg-") as tmp:
        build_from_vg(
            generate_vg_scenes(tmp, synthetic_images, seed=seed), out, source=f"synthetic:{synthetic_images}", **kwargs
        )
    return Path(out)
