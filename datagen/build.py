"""Build the STVQA dataset from Visual Genome scene graphs and write it safely.

Steps (:func:`build_stvqa`):

1. every image file's size is read from its header; when it differs from ``image_data.json`` the boxes are
   rescaled to the file (prompt and boxes use the ORIGINAL file size); each image that gets a question is then
   opened, verified and fully decoded (:func:`datagen.vg.read_image`). A bad image is an error naming the file and
   image id, or is skipped with a warning under ``allow_bad_images``;
2. for every image and category one candidate question is made with a random generator seeded by
   ``(seed, image_id, category)``, so the same seed always gives the same dataset;
3. categories are assigned to images to reach the balance setting: ``relation_fraction`` of the questions are
   relation questions (paper: about half) and the rest is spread evenly over the other categories, as far as the
   images allow (a category that too few images support gives its share to the others);
4. the questions are split 90/10 (``val_fraction``) per category; with several questions per image all questions
   of an image go to the same split;
5. rows in the published STVQA-7K schema (:mod:`datagen.stvqa`) are written with ``DatasetDict.save_to_disk``
   (splits ``train`` and ``val``).

Writing never loses data: the output may not be, contain or lie inside an input; an existing output is only
replaced (``overwrite``) when it holds a dataset this tool wrote (marker file :data:`MARKER`); the new dataset is
written to a temporary sibling folder and swapped in by two renames, so a failure leaves the old dataset in place
(a hard kill between the two renames leaves it complete in the sibling ``.<name>.old-*``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict

from datagen.questions import CATEGORIES, Question, difficulty, make_questions, question_subgraph
from datagen.schema import COLUMNS, SPLITS, DatasetError, features
from datagen.vg import ImageFileError, VGImage, image_size, load_visual_genome, read_image, rescale_image
from rewards.prompt import PromptBuilder, PromptSettings, answer_option_text, format_options

log = logging.getLogger(__name__)

MARKER = "stvqa_build.json"
"""File written into every dataset folder this tool makes (build settings and counts); overwrite requires it."""
TOOL = "spatialthinker-datagen"
"""Value of the marker's ``tool`` key."""


class BuildError(DatasetError):
    """The dataset cannot be built or written as asked (the one-line message says why and names the path)."""


@dataclass
class BuildSettings:
    """How questions are chosen and split."""

    seed: int = 0
    """Seeds question choice, option order, category assignment and the split; same seed, same dataset."""
    per_image: int = 1
    """Questions per image (paper: one), each of a different category (so no category can exceed a share of
    ``1 / per_image``)."""
    relation_fraction: float = 0.5
    """Share of relation questions (paper: about half); the rest is spread evenly over the other categories."""
    val_fraction: float = 0.1
    """Share of each category that goes to the ``val`` split (paper: 90/10 per category)."""
    categories: tuple[str, ...] = CATEGORIES
    """Categories to generate."""
    allow_bad_images: bool = False
    """Skip (with a warning) images that cannot be decoded instead of failing."""

    def __post_init__(self):
        self.categories = tuple(self.categories)
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown or not self.categories:
            raise BuildError(f"unknown categories {unknown or '(none given)'}; choose from {', '.join(CATEGORIES)}")
        if not isinstance(self.per_image, int) or self.per_image < 1:
            raise BuildError(f"per_image must be an integer >= 1, got {self.per_image!r}")
        if not 0.0 <= self.relation_fraction <= 1.0:
            raise BuildError(f"relation_fraction must be in [0, 1], got {self.relation_fraction!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise BuildError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")


@dataclass
class Sample:
    """One chosen question with the image facts its row needs."""

    image: VGImage
    """The image (boxes in the frame of ``image.width`` x ``image.height``)."""
    question: Question
    """The question."""
    scene: dict = field(default_factory=dict)
    """Question-focused scene graph."""


def _rng(seed: int, *parts) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _hash(seed: int, *parts) -> str:
    return hashlib.sha1(":".join(str(p) for p in (seed, *parts)).encode()).hexdigest()


def check_images(images: list[VGImage], allow_bad_images: bool = False) -> list[VGImage]:
    """Read every image file's size from its header; rescale boxes when it differs from the listed size.

    Images without a file (``require_images=False``) are left out with a warning. An unreadable file raises
    :class:`datagen.vg.ImageFileError` unless ``allow_bad_images``, which skips it with a warning. (The images that
    go into the dataset are fully decoded later, by :func:`load_image_bytes`.)
    """
    good = []
    missing = [img.image_id for img in images if img.image_path is None]
    if missing:
        log.warning("%d image(s) have no image file and are left out (first: %s)", len(missing), missing[:5])
    for img in images:
        if img.image_path is None:
            continue
        try:
            size = image_size(img.image_path, img.image_id)
        except ImageFileError as e:
            if not allow_bad_images:
                raise
            log.warning("%s; image skipped", e)
            continue
        good.append(rescale_image(img, size))
    return good


def load_image_bytes(samples: list[Sample], allow_bad_images: bool = False) -> tuple[list[Sample], dict[int, bytes]]:
    """Open, verify and fully decode the image of every sample; returns the samples whose image is good and the
    file bytes by image id. A bad image raises :class:`datagen.vg.ImageFileError` naming the file and image id, or
    with ``allow_bad_images`` drops its questions with a warning."""
    data: dict[int, bytes] = {}
    bad: set[int] = set()
    for s in samples:
        iid = s.image.image_id
        if iid in data or iid in bad:
            continue
        try:
            data[iid] = read_image(s.image.image_path, iid)[0]
        except ImageFileError as e:
            if not allow_bad_images:
                raise
            log.warning("%s; image skipped", e)
            bad.add(iid)
    return [s for s in samples if s.image.image_id in data], data


def _weights(categories: tuple[str, ...], relation_fraction: float) -> dict[str, float]:
    others = [c for c in categories if c != "relation"]
    if "relation" not in categories:
        return {c: 1.0 / len(others) for c in others}
    if not others:
        return {"relation": 1.0}
    w = {c: (1.0 - relation_fraction) / len(others) for c in others}
    w["relation"] = relation_fraction
    return w


def assign_categories(candidates: dict[int, dict[str, Question]], settings: BuildSettings) -> list[tuple[int, str]]:
    """Pick ``(image_id, category)`` pairs, up to ``per_image`` per image, approaching the category weights.

    Images are visited in a seeded order; each takes the feasible category whose target is most urgent: remaining
    deficit divided by the number of images still able to supply that category (so rare categories are taken where
    they occur).
    """
    weights = _weights(settings.categories, settings.relation_fraction)
    order = sorted(candidates, key=lambda iid: _hash(settings.seed, "order", iid))
    total = sum(min(settings.per_image, len(candidates[i])) for i in order)
    target = {c: weights[c] * total for c in settings.categories}
    assigned: Counter = Counter()
    used: dict[int, set[str]] = {i: set() for i in order}
    picks: list[tuple[int, str]] = []
    for _ in range(settings.per_image):
        supply = Counter(c for i in order for c in candidates[i] if c not in used[i])
        for iid in order:
            free = [c for c in settings.categories if c in candidates[iid] and c not in used[iid]]
            if not free:
                continue
            best = max(free, key=lambda c: ((target[c] - assigned[c]) / max(supply[c], 1), target[c]))
            for c in free:
                supply[c] -= 1
            used[iid].add(best)
            assigned[best] += 1
            picks.append((iid, best))
    return picks


def val_image_ids(pairs: Iterable[tuple[int, str]], val_fraction: float, seed: int) -> set[int]:
    """The images of the ``val`` split, from the ``(image_id, category)`` pairs of all questions (rule of
    :func:`split_samples`; needs only these compact pairs, never the rows)."""
    by_cat: dict[str, list[int]] = {}
    for iid, cat in pairs:
        by_cat.setdefault(cat, []).append(iid)
    val_images: set[int] = set()
    for cat in sorted(by_cat):
        group = sorted(by_cat[cat], key=lambda iid: _hash(seed, "split", iid, cat))
        n = len(group)
        want = round(val_fraction * n)
        if val_fraction > 0 and n >= 2:
            want = max(1, want)
        have = sum(1 for iid in group if iid in val_images)
        for iid in group:
            if have >= want:
                break
            if iid not in val_images:
                val_images.add(iid)
                have += 1
    return val_images


def split_samples(samples: list[Sample], val_fraction: float, seed: int) -> dict[str, list[Sample]]:
    """``train``/``val`` split: ``round(val_fraction * n)`` questions of each category (at least one when the
    category has two or more and ``val_fraction > 0``) go to ``val``, chosen in a seeded order; an image picked
    for ``val`` takes all its questions there."""
    val_images = val_image_ids(((s.image.image_id, s.question.category) for s in samples), val_fraction, seed)
    out: dict[str, list[Sample]] = {"train": [], "val": []}
    for s in samples:
        out["val" if s.image.image_id in val_images else "train"].append(s)
    return out


def _row(s: Sample, image_bytes: bytes, builder: PromptBuilder) -> dict:
    q = s.question
    scene = json.dumps(s.scene)
    letter, text = q.answer_letter, q.answer_text
    option_text = answer_option_text(q.options, letter)
    level, rating = difficulty(q, len(s.scene["objects"]))
    level, rating = q.facts.get("level", level), q.facts.get("rating", rating)  # a written question's own
    return {
        "image_id": str(s.image.image_id),
        "images": [{"bytes": image_bytes, "path": Path(s.image.image_path).name}],
        "problem": builder.text(q.question, q.options, (s.image.width, s.image.height)),
        "question_only": q.question,
        "question_with_options": f"{q.question}\nOptions:\n{format_options(q.options)}",
        "options": list(q.options),
        "answer": f"<scene>{scene}</scene>\n<answer>{letter}</answer>",
        "answer_only": letter,
        "answer_text": f"<scene>{scene}</scene>\n<answer>{text}</answer>",
        "answer_text_only": text,
        "answer_option_text": f"<scene>{scene}</scene>\n<answer>{option_text}</answer>",
        "answer_option_text_only": option_text,
        "category": q.category,
        "level": level,
        "rating": rating,
    }


def candidate_questions(img: VGImage, settings: BuildSettings, vocabulary: list[str]) -> dict[str, Question]:
    """One candidate question per category of ``settings`` that ``img`` supports (seeded by ``(seed, image_id,
    category)``; questions whose scene would be empty are never kept)."""
    rngs = {cat: _rng(settings.seed, img.image_id, cat) for cat in settings.categories}
    found = {}
    for cat, q in make_questions(img, rngs, vocabulary=vocabulary).items():
        if q is not None and question_subgraph(img, q.question)["objects"]:
            found[cat] = q
    return found


def make_samples(images: list[VGImage], settings: BuildSettings) -> list[Sample]:
    """Candidate questions for every image and category, balanced by :func:`assign_categories`; each with its
    question-focused scene (questions whose scene would be empty are never kept)."""
    vocabulary = sorted({o.name for img in images for o in img.objects.values()})
    by_id = {img.image_id: img for img in images}
    candidates: dict[int, dict[str, Question]] = {}
    for img in images:
        found = candidate_questions(img, settings, vocabulary)
        if found:
            candidates[img.image_id] = found
    samples = []
    for iid, cat in assign_categories(candidates, settings):
        img = by_id[iid]
        q = candidates[iid][cat]
        samples.append(Sample(img, q, question_subgraph(img, q.question)))
    samples.sort(key=lambda s: (s.image.image_id, CATEGORIES.index(s.question.category)))
    return samples


def make_dataset_dict(
    images: list[VGImage], settings: BuildSettings | None = None, prompt: PromptSettings | None = None
) -> DatasetDict:
    """The STVQA ``DatasetDict`` (``train``, ``val``) for ``images`` (in memory; see :func:`save_dataset`)."""
    settings = settings or BuildSettings()
    images = check_images(images, settings.allow_bad_images)
    samples, image_bytes = load_image_bytes(make_samples(images, settings), settings.allow_bad_images)
    if not samples:
        raise BuildError(f"no questions could be made from the {len(images)} usable image(s) (too few objects?)")
    builder = PromptBuilder(prompt or PromptSettings())
    feats = features()
    splits = split_samples(samples, settings.val_fraction, settings.seed)
    out = {}
    for name in SPLITS:
        rows = [_row(s, image_bytes[s.image.image_id], builder) for s in splits[name]]
        out[name] = (
            Dataset.from_list(rows, features=feats)
            if rows
            else Dataset.from_dict({c: [] for c in COLUMNS}, features=feats)
        )
    return DatasetDict(out)


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(p)))


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], overwrite: bool) -> Path:
    """Refuse an output folder that would endanger data; returns its resolved path.

    Refused: ``out`` equals, contains or lies inside any of ``inputs``; ``out`` is a file; ``out`` is a non-empty
    folder and ``overwrite`` is off; ``out`` is a non-empty folder without this tool's marker file.
    """
    o = _real(out)
    for inp in inputs:
        i = _real(inp)
        if o == i:
            raise BuildError(f"--out {out} is the input folder {inp}; choose another output folder")
        if i in o.parents:
            raise BuildError(f"--out {out} lies inside the input folder {inp}; choose a folder outside it")
        if o in i.parents:
            raise BuildError(f"--out {out} contains the input {inp}; choose a folder that does not hold the input")
    if o.exists() or o.is_symlink():
        if not o.is_dir():
            raise BuildError(f"--out {out} exists and is not a folder; refusing to replace it")
        if any(o.iterdir()):
            marker = o / MARKER
            if not overwrite:
                raise BuildError(
                    f"--out {out} exists and is not empty; pass --overwrite to replace a dataset built here"
                )
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError):
                info = None
            if not isinstance(info, dict) or info.get("tool") != TOOL:
                raise BuildError(
                    f"--out {out} is not a dataset written by make_dataset (no valid {MARKER}); "
                    "refusing to overwrite it"
                )
    return o


def save_dataset(
    dd: DatasetDict, out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
    info: dict | None = None,
) -> Path:  # fmt: skip
    """Write ``dd`` to ``out`` with ``save_to_disk``, safely (rules of :func:`check_output`).

    The dataset and the marker file (``info`` plus the tool name and row counts) go to a temporary sibling folder
    first; then an existing ``out`` is renamed aside, the new folder renamed into place and the old one removed.
    Returns the resolved output path.
    """
    inputs = list(inputs)
    o = check_output(out, inputs, overwrite)
    o.parent.mkdir(parents=True, exist_ok=True)
    tmp = o.parent / f".{o.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        dd.save_to_disk(str(tmp))
        write_marker(tmp, {k: len(v) for k, v in dd.items()}, info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return install_folder(tmp, out, inputs=inputs, overwrite=overwrite)


def write_marker(folder: Path, counts: dict[str, int], info: dict | None) -> None:
    """Write the marker file (tool name, row counts per split and ``info``) into a dataset ``folder``."""
    marker = {"tool": TOOL, "format": "stvqa", "counts": counts, **(info or {})}
    (folder / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True))


def install_folder(
    tmp: Path, out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False
) -> Path:
    """Move the finished dataset folder ``tmp`` (a sibling of ``out``) to ``out``: an existing ``out`` is checked
    again (:func:`check_output`), renamed aside, ``tmp`` renamed into place and the old one removed; on failure
    ``tmp`` is removed and the old dataset put back. Returns the resolved output path."""
    inputs = list(inputs)
    o = _real(out)
    old = o.parent / f".{o.name}.old-{os.getpid()}-{time.time_ns()}"
    try:
        if o.exists():
            check_output(out, inputs, overwrite)  # unchanged since the first check?
            os.rename(o, old)
        os.rename(tmp, o)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not o.exists():
            os.rename(old, o)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return o


def build_stvqa(
    images: list[VGImage],
    out_dir: str | os.PathLike,
    *,
    settings: BuildSettings | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    prompt: PromptSettings | None = None,
    source: str = "",
) -> DatasetDict:
    """Build the dataset for ``images`` and save it to ``out_dir`` (see the module docstring).

    ``inputs`` are the paths the output must stay clear of (the VG root); ``source`` is recorded in the marker.
    The output is checked before any work, so a refused output costs nothing.
    """
    settings = settings or BuildSettings()
    check_output(out_dir, inputs, overwrite)
    dd = make_dataset_dict(images, settings, prompt)
    info = {"settings": asdict(settings), "source": source}
    save_dataset(dd, out_dir, inputs=inputs, overwrite=overwrite, info=info)
    return dd


def build_from_vg(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    per_image: int = 1,
    relation_fraction: float = 0.5,
    val_fraction: float = 0.1,
    categories: tuple[str, ...] = CATEGORIES,
    limit: int | None = None,
    require_images: bool = True,
    allow_bad_images: bool = False,
    overwrite: bool = False,
    source: str | None = None,
) -> DatasetDict:
    """Load the VG folder ``root`` and build the dataset into ``out_dir`` (``root`` is protected as an input;
    ``source`` is recorded in the marker, default the root's path)."""
    settings = BuildSettings(
        seed=seed,
        per_image=per_image,
        relation_fraction=relation_fraction,
        val_fraction=val_fraction,
        categories=tuple(categories),
        allow_bad_images=allow_bad_images,
    )
    check_output(out_dir, [root], overwrite)
    images = load_visual_genome(root, limit=limit, require_images=require_images)
    src = source if source is not None else str(Path(root).resolve())
    return build_stvqa(images, out_dir, settings=settings, inputs=[root], overwrite=overwrite, source=src)


def count_table(dd: DatasetDict) -> str:
    """A per-category table of row counts per split, with totals."""
    splits = list(dd.keys())
    counts = {s: Counter(dd[s]["category"]) for s in splits}
    cats = [c for c in CATEGORIES if any(counts[s][c] for s in splits)]
    cats += sorted({c for s in splits for c in counts[s]} - set(cats))
    width = max([len("category"), len("total")] + [len(c) for c in cats])
    head = f"{'category':<{width}}" + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}{'share':>8}"
    lines = [head, "-" * len(head)]
    grand = sum(len(dd[s]) for s in splits)
    for c in cats:
        row_total = sum(counts[s][c] for s in splits)
        share = f"{100.0 * row_total / grand:.1f}%" if grand else "-"
        lines.append(f"{c:<{width}}" + "".join(f"{counts[s][c]:>8}" for s in splits) + f"{row_total:>8}{share:>8}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}" + "".join(f"{len(dd[s]):>8}" for s in splits) + f"{grand:>8}{'':>8}")
    return "\n".join(lines)
