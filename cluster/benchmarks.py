"""Evaluation benchmarks of SpatialThinker: a registry and loaders that produce normalised rows.

Every benchmark is read either from its Hugging Face id (``datasets.load_dataset``; needs the hub or its cache) or
from a local copy in a published format:

* a parquet / arrow / jsonl / json / csv file, or a directory of them (HF snapshot layout, e.g.
  ``Spatial_Relation/val-00000-of-00001.parquet``, ``data/image-00000-of-00001.parquet``);
* a directory written by ``datasets.save_to_disk``;
* a VLMEvalKit TSV (base64 images, ``A``..``J`` option columns, letter answers).

Images may be HF ``Image`` dicts (``{"bytes", "path"}``), PIL images, raw bytes, base64 strings (also a stringified
list of them, as VLMEvalKit writes multi-image rows) or paths relative to the copy's root (V*Bench, MMVP csv,
CV-Bench jsonl). URLs are not fetched.

Each loader yields :class:`BenchmarkRow` (benchmarks.md section 16): ``id``, ``images``, ``question`` (stem without
the options), ``options`` (option texts, or None for an open answer), ``answer`` (an upper-case letter for ``mcq``,
``"Yes"``/``"No"`` for ``yesno``, the string for ``open``), ``answer_type``, ``category`` (the task the per-task
accuracy groups by), ``subcategory``, ``group_keys`` (MMVP pair, HallusionBench set/figure/question ids, CV-Bench
source, 3DSRBench qid ...) and what the paper-faithful scorer needs (``paper_branch``, ``paper_answer``,
``paper_choices``: the raw fields the public script reads). Bad input raises :class:`BenchmarkError` with a one-line
message naming the benchmark, the file, the row and the column.

Benchmark names (``BENCHMARKS``): stvqa, cv-bench, cv-bench-2d, cv-bench-3d, blink, blink-spatial, blink-depth,
3dsrbench, mmvp, spatialreasoner, spatialbench, mmstar, vstar, realworldqa, mme-realworld-lite, robospatial,
hallusionbench (aliases in ``ALIASES``).
"""

from __future__ import annotations

import ast
import base64
import binascii
import functools
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from rewards.choices import LETTERS, answer_span, extract_choice, letter_of

log = logging.getLogger(__name__)

ANSWER_TYPES = ("mcq", "yesno", "open")
DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".tsv", ".csv")


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded; the message is one line naming the benchmark, file, row and column."""


@dataclass
class BenchmarkRow:
    """One evaluation item in the normalised schema shared by all benchmarks."""

    benchmark: str
    """Registry name (``cv-bench-2d`` ...)."""
    id: str
    """Row id, unique within the benchmark."""
    images: list[Image.Image]
    """The question's images, in order (RGB, original size)."""
    question: str
    """The question stem, without options or answer-format instructions."""
    options: list[str] | None
    """Option texts without letter prefixes (``yesno`` rows: the two yes/no options), None for an open answer."""
    answer: str
    """``mcq``: the correct letter; ``yesno``: ``"Yes"``/``"No"``; ``open``: the reference string."""
    answer_type: str = "mcq"
    """``mcq`` | ``yesno`` | ``open``."""
    category: str = ""
    """The task/category per-task accuracy groups by (CV-Bench ``task``, BLINK task, MMStar category ...)."""
    subcategory: str = ""
    """A finer label where the benchmark has one (MMStar l2, 3DSRBench subtype, HallusionBench subcategory)."""
    group_keys: dict[str, str] = field(default_factory=dict)
    """Keys of the official grouped metrics (``pair``, ``source``, ``set_id``/``figure_id``/``question_id``, ...)."""
    image_size: tuple[int, int] = (0, 0)
    """(W, H) of the first image: the size the prompt states."""
    ground_truth: str | None = None
    """STVQA only: ``<scene>...</scene><answer>(B) text</answer>``, the reward's target."""
    paper_branch: str | None = None
    """Scoring branch of the public SpatialThinker script (``rewards.choices.PAPER_BRANCHES``); None where the script
    does not cover the benchmark (standard scoring is used then)."""
    paper_answer: str = ""
    """The raw answer field the script reads (``"(C)"``, HallusionBench ``"1"``, STVQA ``answer_only`` ...)."""
    paper_choices: list[str] | None = None
    """The raw choices field the script reads, or None."""

    def __post_init__(self):
        if self.answer_type not in ANSWER_TYPES:
            raise BenchmarkError(f"{self.benchmark} row {self.id}: unknown answer_type {self.answer_type!r}")
        if self.images and self.image_size == (0, 0):
            self.image_size = tuple(self.images[0].size)

    @property
    def key(self) -> tuple[str, str]:
        """(benchmark, id): unique over a whole evaluation."""
        return self.benchmark, self.id


@dataclass
class Ctx:
    """Where a raw row came from, for error messages and relative image paths."""

    benchmark: str
    where: str
    """File (or hub id) the row came from."""
    index: int
    """Row position within that file."""
    root: Path | None
    """Directory relative image paths are resolved against."""
    task: str = ""
    """Config / task name the file belongs to (BLINK task, RoboSpatial split)."""

    def fail(self, msg: str) -> BenchmarkError:
        return BenchmarkError(f"{self.benchmark}: {self.where} row {self.index}: {msg}")


Mapper = Callable[[dict, Ctx], "BenchmarkRow | None"]


@dataclass(frozen=True)
class Benchmark:
    """A registry entry: where the data lives and how a raw row becomes a :class:`BenchmarkRow`."""

    name: str
    title: str
    hf_ids: tuple[str, ...]
    """Hub ids, the default first (the paper's re-package where it used one)."""
    split: str
    hf_configs: tuple[str | None, ...] = (None,)
    """Configs to load and concatenate (BLINK: one per task)."""
    files: tuple[str, ...] = ()
    """Globs tried in order inside a local directory; the first that matches anything is read."""
    dir_names: tuple[str, ...] = ()
    """Sub-directory names looked for under ``--data-root``."""
    mapper: Mapper | None = None
    paper_tasks: dict[str, int] | None = None
    """The script's hard-coded per-task denominators (paper mode per-task accuracy)."""
    hub_splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Hub ids whose copy uses other split names than ``split`` (read and concatenated)."""
    note: str = ""


# --------------------------------------------------------------------------------------------------------------------
# image and field helpers
# --------------------------------------------------------------------------------------------------------------------


def _open_bytes(data: bytes, ctx: Ctx, column: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ctx.fail(f"column {column!r} is not a readable image ({e.__class__.__name__})") from None
    return image.convert("RGB") if image.mode != "RGB" else image


def _looks_base64(text: str) -> bool:
    return len(text) > 64 and re.fullmatch(r"[A-Za-z0-9+/=\s]+", text[:256]) is not None


def decode_image(value, ctx: Ctx, column: str) -> Image.Image:
    """One image from any published encoding (PIL, HF Image dict, bytes, base64 text, relative or absolute path)."""
    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, dict):
        if value.get("bytes"):
            return _open_bytes(value["bytes"], ctx, column)
        if value.get("path"):
            return decode_image(str(value["path"]), ctx, column)
        raise ctx.fail(f"column {column!r} holds an image dict without bytes or path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(value), ctx, column)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("http://", "https://")):
            raise ctx.fail(f"column {column!r} is a URL ({text[:60]}); images are not downloaded, use a local copy")
        candidates = []
        if len(text) < 1024:
            path = Path(text).expanduser()
            if path.is_absolute():
                candidates.append(path)
            elif ctx.root is not None:
                candidates.append(ctx.root / text)
        for path in candidates:
            try:
                if path.is_file():
                    return _open_bytes(path.read_bytes(), ctx, column)
            except OSError:
                continue
        if _looks_base64(text):
            try:
                return _open_bytes(base64.b64decode(text, validate=False), ctx, column)
            except (binascii.Error, ValueError):
                pass
        raise ctx.fail(f"column {column!r}: image {text[:80]!r} is neither a file under {ctx.root} nor base64")
    raise ctx.fail(f"column {column!r} has no image (got {type(value).__name__})")


def decode_images(value, ctx: Ctx, column: str) -> list[Image.Image]:
    """A list of images: one image, a list of them, or a stringified list (VLMEvalKit multi-image rows)."""
    if value is None:
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ctx.fail(f"column {column!r} looks like a list of images but does not parse") from None
    if isinstance(value, (list, tuple)):
        return [decode_image(v, ctx, column) for v in value if v is not None]
    return [decode_image(value, ctx, column)]


def _empty(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):  # NaN from pandas
        return True
    return isinstance(v, str) and not v.strip()


def get(raw: dict, ctx: Ctx, *names: str, required: bool = True, default=None):
    """The first present, non-empty column of ``names``."""
    for name in names:
        if name in raw and not _empty(raw[name]):
            return raw[name]
    if required:
        have = ", ".join(sorted(raw)[:20])
        raise ctx.fail(f"missing column {' / '.join(repr(n) for n in names)} (columns: {have})")
    return default


def text_of(raw: dict, ctx: Ctx, *names: str, required: bool = True, default: str = "") -> str:
    v = get(raw, ctx, *names, required=required, default=default)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def parse_list(value, ctx: Ctx, column: str) -> list[str]:
    """A list column: a list, a numpy array, or a string holding a Python/JSON list (SpatialReasonerEval)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ctx.fail(f"column {column!r} is not a list: {value[:60]!r}") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ctx.fail(f"column {column!r} must be a non-empty list, got {value!r}"[:200])
    return [str(v).strip() for v in value]


def letter_columns(raw: dict) -> list[str]:
    """Options from VLMEvalKit ``A``, ``B``, ... columns (stops at the first empty one)."""
    options = []
    for letter in LETTERS:
        if letter not in raw or _empty(raw[letter]):
            break
        options.append(str(raw[letter]).strip())
    return options


def canonical_letter(answer, options: list[str], ctx: Ctx, column: str = "answer") -> str:
    letter = letter_of(str(answer), options)
    if letter is None:
        raise ctx.fail(f"column {column!r} value {str(answer)[:60]!r} is not one of the {len(options)} options")
    return letter


_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[\)\.:]\s*(.*\S)\s*$")
_INSTRUCTIONS = (
    r"Select from the following choices\.?",
    r"Answer with the option'?s letter from the given choices directly\.?",
    r"Please answer directly with only the letter of the correct option and nothing else\.?",
    r"Please answer directly with a single word or number\.?",
    r"Please select the correct answer from the options above\.?",
    r"Answer yes or no\.?",
    r"Please answer yes or no\.?",
)


def strip_instructions(text: str) -> str:
    """Remove the benchmarks' answer-format sentences (the prompt builder states the format)."""
    for pattern in _INSTRUCTIONS:
        text = re.sub(pattern, "", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def split_option_lines(text: str) -> tuple[str, list[str]]:
    """``"stem\\n(A) x\\n(B) y"`` or ``"stem\\nA. x\\nB. y"`` -> (stem, [x, y]); options must run A, B, C ...
    on consecutive trailing lines. No such lines -> (text, [])."""
    lines = text.rstrip().split("\n")
    options: list[str] = []
    start = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        m = _OPTION_LINE.match(lines[i])
        if not m:
            break
        options.insert(0, m.group(2))
        start = i
    letters = [_OPTION_LINE.match(x).group(1) for x in lines[start:]]
    if not options or letters != list(LETTERS[: len(letters)]):
        return text.strip(), []
    stem = "\n".join(lines[:start]).strip()
    stem = re.sub(r"\n?\s*(?:Options|Choices)\s*:\s*$", "", stem, flags=re.IGNORECASE).strip()
    return stem, options


def stem_of(text: str) -> str:
    """A question stem: answer-format instructions and trailing option lines removed."""
    stem, _ = split_option_lines(strip_instructions(text))
    return strip_instructions(stem)


def _yes_no(value: str) -> str | None:
    v = str(value).strip().strip(".").lower()
    return {"yes": "Yes", "no": "No", "true": "Yes", "false": "No"}.get(v)


# --------------------------------------------------------------------------------------------------------------------
# row mappers, one per benchmark family
# --------------------------------------------------------------------------------------------------------------------


def _row_id(raw: dict, ctx: Ctx, *names: str) -> str:
    v = text_of(raw, ctx, *names, required=False)
    return v or f"{ctx.task + '-' if ctx.task else ''}{ctx.index}"


def _mcq_from_columns(raw: dict, ctx: Ctx, question_cols: tuple[str, ...]) -> tuple[str, list[str], str]:
    """(stem, options, raw question text) from a ``choices``/``options`` list or ``A``.. columns or option lines."""
    text = text_of(raw, ctx, *question_cols)
    if "choices" in raw and not _empty(raw.get("choices")):
        options = parse_list(raw["choices"], ctx, "choices")
    elif "options" in raw and not _empty(raw.get("options")):
        options = parse_list(raw["options"], ctx, "options")
    else:
        options = letter_columns(raw)
    stem, inline = split_option_lines(strip_instructions(text))
    if not options:
        options = inline
    if not options:
        raise ctx.fail(f"no options: no 'choices' list, no A/B columns and no option lines in {question_cols[0]!r}")
    return strip_instructions(stem), options, text


def map_cv_bench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """CV-Bench (HF parquet, jsonl + img/, VLMEvalKit TSV). Keeps 2D or 3D rows for the 2d/3d benchmarks."""
    kind = text_of(raw, ctx, "type", required=False)
    want = {"cv-bench-2d": "2D", "cv-bench-3d": "3D"}.get(ctx.benchmark)
    if want and kind and kind.upper() != want:
        return None
    stem, options, _ = _mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    image_col = "image" if not _empty(raw.get("image")) else "filename"
    images = decode_images(get(raw, ctx, "image", "filename"), ctx, image_col)
    source = text_of(raw, ctx, "source", required=False)
    task = text_of(raw, ctx, "task", "category", required=False)
    idx = text_of(raw, ctx, "idx", "index", required=False) or str(ctx.index)
    kind = kind or ("3D" if source == "Omni3D" or task in ("Depth", "Distance") else "2D")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=f"{kind}-{idx}",
        images=images,
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        group_keys={"source": source, "type": kind},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not _empty(raw.get("choices")) else options,
    )


BLINK_TASKS = {"blink-spatial": ("Spatial_Relation",), "blink-depth": ("Relative_Depth",)}
BLINK_TASKS["blink"] = BLINK_TASKS["blink-spatial"] + BLINK_TASKS["blink-depth"]


def map_blink(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """BLINK (HF parquet per task config, VLMEvalKit BLINK.tsv with a ``category`` column)."""
    task = text_of(raw, ctx, "sub_task", "category", required=False) or ctx.task
    task = task.replace(" ", "_")
    if task and task not in BLINK_TASKS[ctx.benchmark]:
        return None
    raw_answer = text_of(raw, ctx, "answer")
    if raw_answer.lower() == "hidden":
        raise ctx.fail("column 'answer' is 'hidden': BLINK's test split has no answers, use split val")
    stem, options, _ = _mcq_from_columns(raw, ctx, ("question", "prompt"))
    if any(f"image_{k}" in raw for k in range(1, 5)):
        images = [
            decode_image(raw[f"image_{k}"], ctx, f"image_{k}")
            for k in range(1, 5)
            if not _empty(raw.get(f"image_{k}"))
        ]
    else:
        images = decode_images(get(raw, ctx, "image"), ctx, "image")
    if not images:
        raise ctx.fail("no image in columns image_1..image_4")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "idx", "index"),
        images=images,
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task or ctx.task,
        group_keys={"task": task or ctx.task},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not _empty(raw.get("choices")) else options,
    )


_3DSR_GROUPS = ("multi_object", "height", "location", "orientation")


def map_3dsrbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """3DSRBench: the paper's re-package (``image``, ``prompt``, ``answer``, ``choices``, ``task``) or the official
    VLMEvalKit TSV / annotation files (``question``, ``A``-``D``, letter ``answer``, subtype ``category``)."""
    stem, options, _ = _mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    sub = text_of(raw, ctx, "category", "subtask", required=False)
    task = text_of(raw, ctx, "task", required=False) or next((g for g in _3DSR_GROUPS if sub.startswith(g)), sub)
    if _empty(raw.get("image")) and not _empty(raw.get("image_url")):
        raise ctx.fail(
            "only 'image_url' is given (the ccvl annotation parquet); use the VLMEvalKit TSV or hunarbatra/3DSRBench"
        )
    keys = {"task": task}
    qid = text_of(raw, ctx, "qid", required=False)
    if qid:
        keys["qid"] = qid
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "index", "idx", "qid"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        subcategory=sub,
        group_keys=keys,
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not _empty(raw.get("choices")) else None,
    )


_INLINE_OPTION = re.compile(r"\(([a-jA-J])\)\s*(.*?)(?=\s*\([a-jA-J]\)|$)", re.DOTALL)


def map_mmvp(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MMVP: official ``Questions.csv`` + ``MMVP Images/{Index}.jpg``, lmms-lab-eval parquet (same columns + image),
    the paper's re-package (``text``, ``label``) or the VLMEvalKit TSV (A/B columns). Pairs: (Index-1)//2."""
    question = text_of(raw, ctx, "Question", "question", "text")
    options = letter_columns(raw)
    inline = text_of(raw, ctx, "Options", "options", required=False)
    if not options:
        source = inline or question
        found = _INLINE_OPTION.findall(source)
        if found and [a.upper() for a, _ in found] == list(LETTERS[: len(found)]):
            options = [t.strip() for _, t in found]
            if not inline:
                question = question[: question.find(f"({found[0][0]})")]
    question = strip_instructions(question).strip()
    raw_answer = text_of(raw, ctx, "Correct Answer", "answer", "label")
    number = text_of(raw, ctx, "Index", "index", required=False)
    if "image" in raw and not _empty(raw["image"]):
        images = decode_images(raw["image"], ctx, "image")
    else:
        if not number:
            raise ctx.fail("no 'image' column and no 'Index' to find 'MMVP Images/{Index}.jpg'")
        for folder in ("MMVP Images", "MMVP Imgaes", "images"):  # the official script's folder name is misspelled
            if ctx.root is not None and (ctx.root / folder / f"{number}.jpg").is_file():
                images = decode_images(f"{folder}/{number}.jpg", ctx, "Index")
                break
        else:
            raise ctx.fail(f"image 'MMVP Images/{number}.jpg' not found under {ctx.root}")
    if number and ("Index" in raw or ctx.where.endswith(".csv")):
        pair = (int(float(number)) - 1) // 2  # official Index is 1-based
    else:
        pair = ctx.index // 2  # consecutive rows form a pair
    if options:
        answer, answer_type = canonical_letter(raw_answer, options, ctx, "Correct Answer"), "mcq"
    else:
        answer, answer_type = raw_answer, "open"
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=number or str(ctx.index),
        images=images,
        question=question,
        options=options or None,
        answer=answer,
        answer_type=answer_type,
        category="mmvp",
        group_keys={"pair": str(pair)},
        paper_branch="generic",
        paper_answer=raw_answer,
    )


def map_spatialreasoner(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """SpatialReasonerEval: the paper's re-package (``choices`` is a string holding a list) or ccvl's TSV."""
    stem, options, _ = _mcq_from_columns(raw, ctx, ("question", "prompt"))
    raw_answer = text_of(raw, ctx, "answer")
    task = text_of(raw, ctx, "task", "category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "index", "idx", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task,
        group_keys={"task": task},
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=parse_list(raw["choices"], ctx, "choices") if not _empty(raw.get("choices")) else None,
    )


def map_spatialbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """SpatialBench: the paper's re-package (``text``, ``answer``, ``category``, ``question_id``) or the official
    per-category json files (``image`` path or [rgb, depth] paths, ``question``, ``answer``). Yes/no answers become
    ``yesno`` rows; numbers and words stay ``open``. Only the RGB image is used."""
    question = strip_instructions(text_of(raw, ctx, "text", "question"))
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False) or ctx.task
    value = get(raw, ctx, "image")
    if isinstance(value, (list, tuple)) and value:
        value = value[0]  # [rgb, depth]: the RGB image
    yn = _yes_no(raw_answer)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "question_id", "id", "idx"),
        images=decode_images(value, ctx, "image"),
        question=question,
        options=["Yes", "No"] if yn else None,
        answer=yn or raw_answer,
        answer_type="yesno" if yn else "open",
        category=category,
        group_keys={"category": category},
        paper_branch="strip",
        paper_answer=raw_answer,
    )


_MMSTAR_MARKER = re.compile(r"(?:^|[\s,])([A-J]):\s")


def split_mmstar_options(text: str) -> tuple[str, list[str]]:
    """``"...?\\nOptions: A: x, B: y"`` -> (stem, [x, y]); split on the ``A:``/``B:`` markers (options may contain
    commas)."""
    head, sep, tail = text.rpartition("Options:")
    if not sep:
        return split_option_lines(text)
    marks = []
    expected = 0
    for m in _MMSTAR_MARKER.finditer(" " + tail):
        if expected < len(LETTERS) and m.group(1) == LETTERS[expected]:
            marks.append(m)
            expected += 1
    if not marks:
        return text.strip(), []
    padded = " " + tail
    options = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(padded)
        options.append(padded[m.end() : end].strip().rstrip(",").strip())
    return head.strip(), options


def map_mmstar(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MM-Star: HF parquet (options inside ``question`` after ``Options:``) or the VLMEvalKit TSV (A-D columns)."""
    text = text_of(raw, ctx, "question")
    options = letter_columns(raw)
    stem, inline = split_mmstar_options(text)
    if not options:
        options = inline
    if not options:
        raise ctx.fail("column 'question' has no 'Options: A: ..., B: ...' and there are no A/B columns")
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False)
    l2 = text_of(raw, ctx, "l2_category", "l2-category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=strip_instructions(stem),
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=category,
        subcategory=l2,
        group_keys={"l2_category": l2},
    )


def map_vstar(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """V*Bench: ``test_questions.jsonl`` (``text`` with ``(A) ..`` lines, ``label``, relative ``image`` path),
    lmms-lab parquet (embedded image) or the VLMEvalKit TSV."""
    stem, options, _ = _mcq_from_columns(raw, ctx, ("text", "question", "prompt"))
    raw_answer = text_of(raw, ctx, "label", "answer")
    category = text_of(raw, ctx, "category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "question_id", "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx, "label"),
        category=category,
    )


def map_realworldqa(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """RealWorldQA: options are ``A. ..`` lines inside ``question`` (letter answers); other items are open-form."""
    text = text_of(raw, ctx, "question")
    raw_answer = text_of(raw, ctx, "answer")
    options = letter_columns(raw)
    stem, inline = split_option_lines(strip_instructions(text))
    options = options or inline
    if options:
        answer, answer_type = canonical_letter(raw_answer, options, ctx), "mcq"
    else:
        answer, answer_type = raw_answer, "open"
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "index", "id"),
        images=decode_images(get(raw, ctx, "image"), ctx, "image"),
        question=strip_instructions(stem),
        options=options or None,
        answer=answer,
        answer_type=answer_type,
        category=answer_type,
        paper_branch="strip",
        paper_answer=raw_answer,
    )


def map_mme_realworld(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """MME-RealWorld-Lite: lmms-eval parquet (``multi-choice options`` list ``"(A) .."``, base64 ``bytes``) or the
    VLMEvalKit TSV. ``category`` is ``Perception/<task>`` or ``Reasoning/<task>``."""
    if not letter_columns(raw) and not _empty(raw.get("multi-choice options")):
        options = parse_list(raw["multi-choice options"], ctx, "multi-choice options")
        options = [re.sub(r"^\(?[A-J][\)\.:]\s*", "", o) for o in options]
        stem = stem_of(text_of(raw, ctx, "question"))
    else:
        stem, options, _ = _mcq_from_columns(raw, ctx, ("question",))
    raw_answer = text_of(raw, ctx, "answer")
    category = text_of(raw, ctx, "category", required=False)
    dimension, _, task = category.partition("/")
    l2 = text_of(raw, ctx, "l2-category", "l2_category", required=False)
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "index", "question_id", "id"),
        images=decode_images(get(raw, ctx, "bytes", "image"), ctx, "bytes"),
        question=stem,
        options=options,
        answer=canonical_letter(raw_answer, options, ctx),
        category=task or category,
        subcategory=l2,
        group_keys={"dimension": dimension if task else "", "l2_category": l2},
    )


def _options_or_inline(raw: dict, ctx: Ctx, text: str) -> list[str]:
    """A list column ``options``/``choices`` if present (the paper's re-packages), else option lines in the text."""
    for name in ("options", "choices"):
        if name in raw and not _empty(raw[name]):
            return parse_list(raw[name], ctx, name)
    return split_option_lines(strip_instructions(text))[1]


def map_robospatial(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """RoboSpatial-Home: the paper's re-package (``image``, ``depth_image``, ``prompt``, ``answer``, ``options``,
    ``category``) or the official splits (``img``/``image``, ``question``, Yes/No ``answer``). The pointing
    (``context``) items are skipped; only the RGB image is used."""
    category = text_of(raw, ctx, "category", required=False) or ctx.task
    if category == "context":
        return None
    text = text_of(raw, ctx, "prompt", "question")
    raw_answer = text_of(raw, ctx, "answer")
    options = _options_or_inline(raw, ctx, text)
    stem = stem_of(text)
    yn = _yes_no(raw_answer)
    if yn is None and options:
        letter = letter_of(raw_answer, options)
        yn = _yes_no(options[LETTERS.index(letter)]) if letter else None
    if yn is None:
        raise ctx.fail(f"column 'answer' value {raw_answer[:60]!r} is not yes/no (pointing items are not supported)")
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=_row_id(raw, ctx, "id", "index", "idx"),
        images=decode_images(get(raw, ctx, "image", "img", "rgb"), ctx, "image"),
        question=stem,
        options=options if options and all(_yes_no(o) for o in options) else ["Yes", "No"],
        answer=yn,
        answer_type="yesno",
        category=category,
        paper_branch="mcq",
        paper_answer=raw_answer,
        paper_choices=options or None,
    )


def map_hallusionbench(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """HallusionBench: HF parquet (``gt_answer`` "1"/"0" and all id columns) or the VLMEvalKit TSV (Yes/No
    ``answer``; set/figure/question ids are the last three ``_`` fields of ``index``). Rows without an image
    (the ``non_image`` split) are skipped."""
    value = raw.get("image")
    if _empty(value):
        return None
    if "gt_answer" in raw:
        gt = text_of(raw, ctx, "gt_answer").replace(".", "")
        answer = "Yes" if gt == "1" else "No" if gt == "0" else None
        if answer is None:
            raise ctx.fail(f"column 'gt_answer' must be '1' or '0', got {gt!r}")
        keys = {
            "category": text_of(raw, ctx, "category"),
            "subcategory": text_of(raw, ctx, "subcategory"),
            "set_id": text_of(raw, ctx, "set_id"),
            "figure_id": text_of(raw, ctx, "figure_id"),
            "question_id": text_of(raw, ctx, "question_id"),
        }
        paper_answer = gt
    else:
        answer = _yes_no(text_of(raw, ctx, "answer"))
        if answer is None:
            raise ctx.fail(f"column 'answer' must be Yes or No, got {raw.get('answer')!r}")
        index = text_of(raw, ctx, "index")
        parts = index.split("_")
        if len(parts) < 5:
            raise ctx.fail(f"column 'index' {index!r} does not hold category_subcategory_set_figure_question ids")
        keys = {
            "category": text_of(raw, ctx, "category", required=False) or parts[0],
            "subcategory": text_of(raw, ctx, "l2-category", "subcategory", required=False) or parts[1],
            "set_id": parts[-3],
            "figure_id": parts[-2],
            "question_id": parts[-1],
        }
        paper_answer = "1" if answer == "Yes" else "0"
    rid = "_".join(keys[k] for k in ("category", "subcategory", "set_id", "figure_id", "question_id"))
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=rid,
        images=decode_images(value, ctx, "image"),
        question=strip_instructions(text_of(raw, ctx, "question")),
        options=["Yes", "No"],
        answer=answer,
        answer_type="yesno",
        category=keys["category"],
        subcategory=keys["subcategory"],
        group_keys=keys,
        paper_branch="hallusion",
        paper_answer=paper_answer,
    )


# STVQA ---------------------------------------------------------------------------------------------------------------


def stvqa_row(fields: dict, raw: dict, ctx: Ctx) -> BenchmarkRow:
    """A :class:`BenchmarkRow` from STVQA task fields; the letter is read from the ground truth's answer block."""
    options = list(fields["options"])
    letter = extract_choice(answer_span(fields["ground_truth"]), options, span=False)
    if letter is None:
        raise ctx.fail(f"ground truth answer {answer_span(fields['ground_truth'])[:60]!r} names no option")
    image = fields["image"]
    image = decode_image(image, ctx, "images") if not isinstance(image, Image.Image) else image.convert("RGB")
    paper = text_of(raw, ctx, "answer_only", required=False) or letter
    return BenchmarkRow(
        benchmark=ctx.benchmark,
        id=str(fields["id"]),
        images=[image],
        question=str(fields["question"]),
        options=options,
        answer=letter,
        category=str(fields.get("category") or ""),
        image_size=tuple(int(v) for v in fields["image_size"]),
        ground_truth=str(fields["ground_truth"]),
        paper_branch="mcq",
        paper_answer=paper,
        paper_choices=options,
    )


@functools.cache
def datagen_stvqa():
    """``datagen.stvqa``, the project's one STVQA-7K reader (``load_stvqa`` / ``task_fields``); imported on first
    use: it is heavy (imports datasets) and only STVQA needs it."""
    from datagen import stvqa

    return stvqa


def map_stvqa(raw: dict, ctx: Ctx) -> BenchmarkRow | None:
    """STVQA-7K val (``images``, ``question_only``, ``options``, ``answer_option_text``, ``answer_only`` ...)."""
    module = datagen_stvqa()
    try:
        fields = module.task_fields(raw)
    except module.DatasetError as e:
        raise ctx.fail(str(e)) from None
    return stvqa_row(fields, raw, ctx)


# --------------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------------

_CV_FILES_ALL = ("test_[23]d.parquet", "test.parquet", "data/test*.parquet", "test_[23]d.jsonl", "*.tsv")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "stvqa",
            "STVQA-7K val",
            ("hunarbatra/STVQA-7K", "OX-PIXL/STVQA-7K"),
            "val",
            files=("*val*.parquet", "data/val*.parquet", "*val*.jsonl", "*val*.arrow"),
            dir_names=("STVQA-7K", "stvqa"),
            mapper=map_stvqa,
            note="accuracy plus mean reward components (rewards.spatial.compute_reward)",
        ),
        Benchmark(
            "cv-bench",
            "CV-Bench (2D+3D)",
            ("nyu-visionx/CV-Bench",),
            "test",
            ("default",),
            files=_CV_FILES_ALL,
            dir_names=("CV-Bench", "cv-bench"),
            mapper=map_cv_bench,
            paper_tasks={"Count": 788, "Relation": 650, "Distance": 600, "Depth": 600},
        ),
        Benchmark(
            "cv-bench-2d",
            "CV-Bench 2D",
            ("nyu-visionx/CV-Bench",),
            "test",
            ("2D",),
            files=("test_2d.parquet", "test.parquet", "data/test*.parquet", "test_2d.jsonl", "*2D*.tsv", "*.tsv"),
            dir_names=("CV-Bench", "cv-bench"),
            mapper=map_cv_bench,
            paper_tasks={"Count": 788, "Relation": 650},
        ),
        Benchmark(
            "cv-bench-3d",
            "CV-Bench 3D",
            ("nyu-visionx/CV-Bench",),
            "test",
            ("3D",),
            files=("test_3d.parquet", "test.parquet", "data/test*.parquet", "test_3d.jsonl", "*3D*.tsv", "*.tsv"),
            dir_names=("CV-Bench", "cv-bench"),
            mapper=map_cv_bench,
            paper_tasks={"Distance": 600, "Depth": 600},
        ),
        Benchmark(
            "blink",
            "BLINK Spatial_Relation + Relative_Depth",
            ("BLINK-Benchmark/BLINK",),
            "val",
            BLINK_TASKS["blink"],
            files=("{task}/val-*.parquet", "{task}/val*.parquet", "*.tsv"),
            dir_names=("BLINK", "blink"),
            mapper=map_blink,
        ),
        Benchmark(
            "blink-spatial",
            "BLINK Spatial_Relation",
            ("BLINK-Benchmark/BLINK",),
            "val",
            BLINK_TASKS["blink-spatial"],
            files=("{task}/val-*.parquet", "{task}/val*.parquet", "*.tsv"),
            dir_names=("BLINK", "blink"),
            mapper=map_blink,
        ),
        Benchmark(
            "blink-depth",
            "BLINK Relative_Depth",
            ("BLINK-Benchmark/BLINK",),
            "val",
            BLINK_TASKS["blink-depth"],
            files=("{task}/val-*.parquet", "{task}/val*.parquet", "*.tsv"),
            dir_names=("BLINK", "blink"),
            mapper=map_blink,
        ),
        Benchmark(
            "3dsrbench",
            "3DSRBench",
            ("hunarbatra/3DSRBench", "ccvl/3DSRBench"),
            "test",
            files=("data/test*.parquet", "test*.parquet", "*vlmevalkit.tsv", "*.tsv", "*.parquet"),
            dir_names=("3DSRBench", "3dsrbench"),
            mapper=map_3dsrbench,
            paper_tasks={"height": 350, "location": 875, "orientation": 525, "multi_object": 875},
            note="plain accuracy (the paper's re-package); flip/circular need the VLMEvalKit TSV's qid",
        ),
        Benchmark(
            "mmvp",
            "MMVP",
            ("hunarbatra/MMVP", "lmms-lab-eval/MMVP"),
            "train",
            files=("Questions.csv", "data/train*.parquet", "train*.parquet", "*.tsv", "*.parquet"),
            dir_names=("MMVP", "mmvp"),
            mapper=map_mmvp,
        ),
        Benchmark(
            "spatialreasoner",
            "SpatialReasonerEval",
            ("hunarbatra/SpatialReasonerEval",),
            "train",
            files=("data/train*.parquet", "train*.parquet", "CV-Bench-3D.tsv", "*.tsv", "*.parquet"),
            dir_names=("SpatialReasonerEval", "spatialreasoner"),
            mapper=map_spatialreasoner,
            paper_tasks={"Depth": 600, "Distance": 600},
            note="overlaps CV-Bench 3D (same images and questions)",
        ),
        Benchmark(
            "spatialbench",
            "SpatialBench",
            ("hunarbatra/SpatialBench",),
            "train",
            files=("data/train*.parquet", "train*.parquet", "*.parquet", "*.json"),
            dir_names=("SpatialBench", "spatialbench"),
            mapper=map_spatialbench,
            paper_tasks={"existence": 40, "reach": 40, "size": 40, "positional": 34, "counting": 20},
            note="plain per-category accuracy (not SpatialBot's pair/count-error scores)",
        ),
        Benchmark(
            "mmstar",
            "MM-Star",
            ("Lin-Chen/MMStar",),
            "val",
            ("val",),
            files=("mmstar.parquet", "*.parquet", "MMStar.tsv", "*.tsv"),
            dir_names=("MMStar", "mmstar"),
            mapper=map_mmstar,
        ),
        Benchmark(
            "vstar",
            "V*Bench",
            ("lmms-lab/vstar-bench", "craigwu/vstar_bench"),
            "test",
            files=("test_questions.jsonl", "data/test*.parquet", "test*.parquet", "*.tsv"),
            dir_names=("vstar_bench", "vstar-bench", "vstar"),
            mapper=map_vstar,
        ),
        Benchmark(
            "realworldqa",
            "RealWorldQA",
            ("visheratin/realworldqa", "xai-org/RealworldQA", "lmms-lab/RealWorldQA"),
            "test",
            files=("data/test*.parquet", "test*.parquet", "*.tsv", "*.parquet"),
            dir_names=("realworldqa", "RealworldQA", "RealWorldQA"),
            mapper=map_realworldqa,
        ),
        Benchmark(
            "mme-realworld-lite",
            "MME-RealWorld-Lite",
            ("yifanzhang114/MME-RealWorld-lite-lmms-eval",),
            "train",
            files=("data/train*.parquet", "train*.parquet", "*lite*.tsv", "*.tsv", "*.parquet"),
            dir_names=("MME-RealWorld-lite-lmms-eval", "MME-RealWorld-Lite", "mme-realworld-lite"),
            mapper=map_mme_realworld,
        ),
        Benchmark(
            "robospatial",
            "RoboSpatial-Home (RGB, yes/no)",
            ("hunarbatra/RoboSpatial-Home", "chanhee-luke/RoboSpatial-Home"),
            "train",
            files=("data/train*.parquet", "data/{compatibility,configuration}*.parquet", "*.tsv", "*.parquet"),
            dir_names=("RoboSpatial-Home", "robospatial"),
            mapper=map_robospatial,
            paper_tasks={"configuration": 123, "compatibility": 105},
            hub_splits={"chanhee-luke/RoboSpatial-Home": ("compatibility", "configuration")},
            note="compatibility + configuration (yes/no); pointing (context) items skipped; RGB image only",
        ),
        Benchmark(
            "hallusionbench",
            "HallusionBench (image split)",
            ("lmms-lab/HallusionBench",),
            "image",
            files=("data/image-*.parquet", "image-*.parquet", "HallusionBench.tsv", "*.tsv"),
            dir_names=("HallusionBench", "hallusionbench"),
            mapper=map_hallusionbench,
        ),
    )
}

ALIASES = {
    "cv-bench-2D": "cv-bench-2d",
    "cv-bench-3D": "cv-bench-3d",
    "cvbench": "cv-bench",
    "3dsr": "3dsrbench",
    "realworld-qa": "realworldqa",
    "rwqa": "realworldqa",
    "mm-star": "mmstar",
    "v-star": "vstar",
    "vstar-bench": "vstar",
    "mme-rw-lite": "mme-realworld-lite",
    "mme-realworld": "mme-realworld-lite",
    "spatialreasonereval": "spatialreasoner",
    "robospatial-home": "robospatial",
    "robospatial-rgb": "robospatial",
    "hallusion": "hallusionbench",
    "stvqa-7k": "stvqa",
}
"""Other spellings accepted (the public script's names among them)."""


def resolve_name(name: str) -> str:
    """The registry name of a benchmark name or alias (case, ``_`` and ``-`` ignored)."""
    key = name.strip().lower().replace("_", "-")
    if key in BENCHMARKS:
        return key
    for alias, target in ALIASES.items():
        if alias.lower().replace("_", "-") == key:
            return target
    raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


# --------------------------------------------------------------------------------------------------------------------
# reading raw rows
# --------------------------------------------------------------------------------------------------------------------


def _iter_parquet(path: Path) -> Iterator[dict]:
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=64):
            yield from batch.to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        if isinstance(e, BenchmarkError):
            raise
        raise BenchmarkError(f"{path}: not a readable parquet file ({e.__class__.__name__}: {e})") from None


def _iter_arrow(path: Path) -> Iterator[dict]:
    from datasets import Dataset  # heavy; only for .arrow copies

    try:
        ds = Dataset.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises many types
        raise BenchmarkError(f"{path}: not a readable arrow file ({e.__class__.__name__}: {e})") from None
    yield from ds


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path}: line {i + 1} is not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path}: line {i + 1} is not a JSON object")
            yield row


def _iter_json(path: Path) -> Iterator[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "questions", "annotations"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            if data and all(isinstance(v, list) for v in data.values()):  # column-oriented
                n = len(next(iter(data.values())))
                data = [{k: v[i] for k, v in data.items()} for i in range(n)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BenchmarkError(f"{path}: expected a JSON list of objects")
    yield from data


def _iter_table(path: Path, sep: str) -> Iterator[dict]:
    import pandas as pd  # pandas is only needed for TSV/CSV copies

    try:
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=256)
        for chunk in reader:
            yield from chunk.to_dict("records")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise BenchmarkError(f"{path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} file ({e})") from None


def read_file(path: Path) -> Iterator[dict]:
    """Raw rows of one data file, by suffix."""
    suffix = path.suffix.lower()
    readers = {
        ".parquet": _iter_parquet,
        ".arrow": _iter_arrow,
        ".jsonl": _iter_jsonl,
        ".json": _iter_json,
        ".tsv": lambda p: _iter_table(p, "\t"),
        ".csv": lambda p: _iter_table(p, ","),
    }
    if suffix not in readers:
        raise BenchmarkError(f"{path}: unsupported file type {suffix!r}; use {', '.join(DATA_SUFFIXES)}")
    return readers[suffix](path)


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        p for alt in m.group(1).split(",") for p in _expand_braces(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def _files_for(bench: Benchmark, root: Path, task: str | None) -> list[Path]:
    for pattern in bench.files:
        if "{task}" in pattern and not task:
            continue
        found: list[Path] = []
        for p in _expand_braces(pattern.replace("{task}", task or "")):
            found.extend(x for x in sorted(root.glob(p)) if x.is_file())
        if found:
            return found
    found = sorted(x for x in root.rglob("*") if x.is_file() and x.suffix.lower() in DATA_SUFFIXES)
    found = [x for x in found if not any(part.startswith(".") for part in x.relative_to(root).parts)]
    split = [x for x in found if bench.split in x.name.lower()]
    return split or found


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _iter_saved(bench: Benchmark, path: Path) -> Iterator[dict]:
    from datasets import load_from_disk  # heavy; only for save_to_disk copies

    dd = load_from_disk(str(path))
    if hasattr(dd, "keys"):
        if bench.split not in dd:
            raise BenchmarkError(f"{bench.name}: {path} has no split {bench.split!r} (has {', '.join(dd.keys())})")
        dd = dd[bench.split]
    yield from dd


def _iter_hub(bench: Benchmark, hf_id: str) -> Iterator[tuple[dict, Ctx]]:
    from datasets import load_dataset  # heavy, and only needed for hub ids

    splits = bench.hub_splits.get(hf_id, (bench.split,))
    for config in bench.hf_configs:
        for split in splits:
            where = f"{hf_id}" + (f"[{config}]" if config else "") + f":{split}"
            try:
                ds = load_dataset(hf_id, config, split=split) if config else load_dataset(hf_id, split=split)
            except Exception as e:  # noqa: BLE001 - network, auth and schema errors all end here
                raise BenchmarkError(
                    f"{bench.name}: cannot load {where} ({e.__class__.__name__}: {e})"[:400]
                ) from None
            task = config or (split if len(splits) > 1 else "")
            for i, raw in enumerate(ds):
                yield raw, Ctx(bench.name, where, i, None, task)


def iter_raw(bench: Benchmark, source: str | Path) -> Iterator[tuple[dict, Ctx]]:
    """(raw row, context) pairs of a benchmark read from a local path or a hub id."""
    path = Path(source).expanduser()
    if not path.exists():
        text = str(source)
        text = text.removeprefix("hf://")
        if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
            yield from _iter_hub(bench, text)
            return
        raise BenchmarkError(f"{bench.name}: source {source} does not exist (and is not a hub id owner/name)")
    if path.is_file():
        for i, raw in enumerate(read_file(path)):
            yield raw, Ctx(bench.name, str(path), i, path.parent, _task_of(bench, path, path.parent))
        return
    if _is_saved_dataset(path):
        for i, raw in enumerate(_iter_saved(bench, path)):
            yield raw, Ctx(bench.name, str(path), i, path, "")
        return
    tasks: Iterable[str | None] = (
        [t for t in bench.hf_configs if t] if any("{task}" in f for f in bench.files) else [None]
    )
    seen: set[Path] = set()
    any_file = False
    for task in tasks:
        for f in _files_for(bench, path, task):
            if f in seen:
                continue
            seen.add(f)
            any_file = True
            for i, raw in enumerate(read_file(f)):
                yield raw, Ctx(bench.name, str(f), i, path, task or _task_of(bench, f, path))
    if not any_file:
        raise BenchmarkError(f"{bench.name}: no data files ({', '.join(DATA_SUFFIXES)}) under {path}")


def _task_of(bench: Benchmark, f: Path, root: Path) -> str:
    """The config a file belongs to, from its directory (BLINK ``Spatial_Relation/``) or name (RoboSpatial
    ``data/compatibility-*.parquet``, SpatialBench ``counting.json``)."""
    names = [p for p in f.relative_to(root).parts[:-1]] + [f.stem.split("-")[0]]
    for n in names:
        for t in bench.hf_configs:
            if t and n == t:
                return t
    if bench.name == "spatialbench" and f.suffix == ".json":
        return f.stem
    if bench.name == "robospatial" and f.stem.split("-")[0] in ("context", "compatibility", "configuration"):
        return f.stem.split("-")[0]
    return ""


def find_local(bench: Benchmark, data_root: str | Path) -> Path | None:
    """The benchmark's local copy under ``data_root``: ``<root>/<dir name>`` for the registry's directory names,
    the hub ids' repository names and the benchmark name."""
    root = Path(data_root).expanduser()
    names = list(bench.dir_names) + [h.split("/")[-1] for h in bench.hf_ids] + [bench.name]
    for n in names:
        if (root / n).exists():
            return root / n
    return None


def resolve_source(name: str, source: str | Path | None = None, data_root: str | Path | None = None) -> str:
    """Where a benchmark is read from: an explicit source, else its copy under ``data_root``, else its default
    hub id."""
    bench = BENCHMARKS[resolve_name(name)]
    if source:
        return str(source)
    if data_root:
        local = find_local(bench, data_root)
        if local is None:
            tried = ", ".join(list(bench.dir_names) + [bench.name])
            raise BenchmarkError(f"{bench.name}: no local copy under {data_root} (looked for {tried})")
        return str(local)
    return bench.hf_ids[0]


def iter_benchmark(
    name: str, source: str | Path | None = None, *, data_root: str | Path | None = None, limit: int | None = None
) -> Iterator[BenchmarkRow]:
    """Normalised rows of a benchmark (see :func:`resolve_source` for where they come from); at most ``limit``."""
    bench = BENCHMARKS[resolve_name(name)]
    src = resolve_source(bench.name, source, data_root)
    if bench.name == "stvqa":
        raw_rows = _iter_datagen_stvqa(bench, src)
    else:
        raw_rows = iter_raw(bench, src)
    n = 0
    ids: set[str] = set()
    for raw, ctx in raw_rows:
        if limit is not None and n >= limit:
            return
        row = bench.mapper(raw, ctx)
        if row is None:
            continue
        if row.id in ids:
            row.id = f"{row.id}#{ctx.index}"
        ids.add(row.id)
        n += 1
        yield row
    if n == 0:
        raise BenchmarkError(f"{bench.name}: {src} holds no rows for this benchmark")


def _iter_datagen_stvqa(bench: Benchmark, src: str) -> Iterator[tuple[dict, Ctx]]:
    module = datagen_stvqa()
    try:
        ds = module.load_stvqa(src, bench.split)
    except module.DatasetError as e:
        raise BenchmarkError(f"{bench.name}: {e}") from None
    for i, raw in enumerate(ds):
        yield raw, Ctx(bench.name, src, i, Path(src) if Path(src).is_dir() else None, "")


def load_benchmark(
    name: str, source: str | Path | None = None, *, data_root: str | Path | None = None, limit: int | None = None
) -> list[BenchmarkRow]:
    """All rows of :func:`iter_benchmark` as a list."""
    rows = list(iter_benchmark(name, source, data_root=data_root, limit=limit))
    log.info("loaded %s: %d rows from %s", resolve_name(name), len(rows), resolve_source(name, source, data_root))
    return rows
