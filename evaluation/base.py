"""The base of every benchmark: the normalised row, the registry entry, the field and image helpers the row mappers
share, and the counting helpers the official aggregates share.

A benchmark module (``evaluation/benchmarks/<name>.py``) maps a raw dataset row (a dict from any published copy, see
:mod:`evaluation.loading`) to a :class:`BenchmarkRow` and declares one or more :class:`Benchmark` entries: where the
data lives, which columns hold the dataset's own ids, the official aggregate and the headline metric.

Rows follow the schema of the evaluation harnesses (VLMEvalKit, lmms-eval): ``id``, ``images``, ``question`` (stem
without the options), ``options`` (option texts, or None for an open answer), ``answer`` (an upper-case letter for
``mcq``, ``"Yes"``/``"No"`` for ``yesno``, the string for ``open``), ``answer_type``, ``category`` (the task the
per-task accuracy groups by), ``subcategory``, ``group_keys`` (MMVP pair, HallusionBench set/figure/question ids,
CV-Bench source, 3DSRBench qid ...) and what the paper-faithful scorer needs (``paper_branch``, ``paper_answer``,
``paper_choices``: the raw fields the public script reads). Bad input raises :class:`BenchmarkError` with a one-line
message naming the benchmark, the file, the row and the column.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from evaluation.answers import LETTERS, letter_of

ANSWER_TYPES = ("mcq", "yesno", "open")


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
    """Scoring branch of the public SpatialThinker script (``evaluation.answers.PAPER_BRANCHES``); None where the
    script does not cover the benchmark (standard scoring is used then)."""
    paper_answer: str = ""
    """The raw answer field the script reads (``"(C)"``, HallusionBench ``"1"``, STVQA ``answer_only`` ...)."""
    paper_choices: list[str] | None = None
    """The raw choices field the script reads, or None."""
    native_ids: tuple[str, ...] = ()
    """The row's ids in the dataset's own id columns (:attr:`Benchmark.id_columns`: CV-Bench ``idx``, MMVP ``Index``
    ...), filled by the loader: a ``--predictions`` file written by another harness may use them instead of ``id``."""

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


@dataclass
class SampleResult:
    """One scored response."""

    benchmark: str
    id: str
    category: str
    answer: str
    """The row's canonical answer (letter, Yes/No or string)."""
    prediction: str | None
    """The extracted prediction; None when nothing could be extracted (scored wrong)."""
    correct: bool
    scoring: str
    """``standard`` or ``paper``."""
    output: str = ""
    finish_reason: str = ""
    reward: dict | None = None
    """STVQA: the reward terms of :func:`rewards.spatial.compute_reward`."""


Mapper = Callable[[dict, Ctx], "BenchmarkRow | None"]
Official = Callable[[list[BenchmarkRow], list[SampleResult]], dict[str, float]]
RawRows = Callable[["Benchmark", str], Iterator[tuple[dict, Ctx]]]


@dataclass(frozen=True)
class Benchmark:
    """A registry entry: where the data lives, how a raw row becomes a :class:`BenchmarkRow`, and how the scored rows
    become the benchmark's official numbers."""

    name: str
    title: str
    hf_ids: tuple[str, ...]
    """Hub ids, the default first (the paper's re-package where it used one)."""
    split: str
    mapper: Mapper
    """Raw row -> :class:`BenchmarkRow`, or None to skip the row (another variant's, or unsupported)."""
    id_columns: tuple[str, ...] = ()
    """The dataset's own id columns, in the order another harness would key predictions by them (CV-Bench ``idx``,
    MMVP ``Index`` ...); each row's values land in :attr:`BenchmarkRow.native_ids`."""
    official: Official | None = None
    """The official aggregates of the scored rows (``metrics`` of the result), or None for plain accuracy only."""
    headline: str | None = None
    """The official metric the report table shows beside plain accuracy."""
    shown: tuple[str, ...] = ()
    """Further metrics the report table shows (the rest are in the JSON and MLflow)."""
    hf_configs: tuple[str | None, ...] = (None,)
    """Configs to load and concatenate (BLINK: one per task)."""
    files: tuple[str, ...] = ()
    """Globs tried in order inside a local directory; the first that matches anything is read."""
    dir_names: tuple[str, ...] = ()
    """Sub-directory names looked for under ``--data-root``."""
    aliases: tuple[str, ...] = ()
    """Other spellings of the name accepted on the command line (the public script's names among them)."""
    paper_tasks: dict[str, int] | None = None
    """The script's hard-coded per-task denominators (paper mode per-task accuracy)."""
    hub_splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Hub ids whose copy uses other split names than ``split`` (read and concatenated)."""
    task_of_file: Callable[[Path], str] | None = None
    """The task/config a local file belongs to when its directory does not say (SpatialBench ``counting.json``)."""
    raw_rows: RawRows | None = None
    """Reads (raw row, context) pairs from a resolved source instead of :func:`evaluation.loading.iter_raw`."""
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


def is_empty(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):  # NaN from pandas
        return True
    return isinstance(v, str) and not v.strip()


def get(raw: dict, ctx: Ctx, *names: str, required: bool = True, default=None):
    """The first present, non-empty column of ``names``."""
    for name in names:
        if name in raw and not is_empty(raw[name]):
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
        if letter not in raw or is_empty(raw[letter]):
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


def yes_no(value: str) -> str | None:
    v = str(value).strip().strip(".").lower()
    return {"yes": "Yes", "no": "No", "true": "Yes", "false": "No"}.get(v)


def row_id(raw: dict, ctx: Ctx, *names: str) -> str:
    v = text_of(raw, ctx, *names, required=False)
    return v or f"{ctx.task + '-' if ctx.task else ''}{ctx.index}"


def mcq_from_columns(raw: dict, ctx: Ctx, question_cols: tuple[str, ...]) -> tuple[str, list[str], str]:
    """(stem, options, raw question text) from a ``choices``/``options`` list or ``A``.. columns or option lines."""
    text = text_of(raw, ctx, *question_cols)
    if "choices" in raw and not is_empty(raw.get("choices")):
        options = parse_list(raw["choices"], ctx, "choices")
    elif "options" in raw and not is_empty(raw.get("options")):
        options = parse_list(raw["options"], ctx, "options")
    else:
        options = letter_columns(raw)
    stem, inline = split_option_lines(strip_instructions(text))
    if not options:
        options = inline
    if not options:
        raise ctx.fail(f"no options: no 'choices' list, no A/B columns and no option lines in {question_cols[0]!r}")
    return strip_instructions(stem), options, text


def options_or_inline(raw: dict, ctx: Ctx, text: str) -> list[str]:
    """A list column ``options``/``choices`` if present (the paper's re-packages), else option lines in the text."""
    for name in ("options", "choices"):
        if name in raw and not is_empty(raw[name]):
            return parse_list(raw[name], ctx, name)
    return split_option_lines(strip_instructions(text))[1]


# --------------------------------------------------------------------------------------------------------------------
# counting helpers of the official aggregates
# --------------------------------------------------------------------------------------------------------------------


def accuracy(flags: Iterable[bool]) -> tuple[int, int, float]:
    """(n, correct, fraction; NaN when empty)."""
    flags = list(flags)
    n = len(flags)
    c = sum(1 for f in flags if f)
    return n, c, (c / n if n else float("nan"))


def all_correct_groups(items: Iterable[tuple[str, bool]]) -> tuple[int, int, float]:
    """(groups, groups all correct, fraction) over (key, correct) pairs."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, ok in items:
        groups[key].append(ok)
    return accuracy(all(v) for v in groups.values())


def mean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values (NaN when there are none)."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def accuracy_by(pairs: Iterable[tuple[str, bool]]) -> dict[str, float]:
    """Accuracy per key over (key, correct) pairs, empty keys left out."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, ok in pairs:
        groups[key].append(ok)
    return {k: accuracy(v)[2] for k, v in groups.items() if k}
