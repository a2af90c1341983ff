"""The one prompt builder for the STVQA task: training, warm start, validation and evaluation.

The prompt follows the published SpatialThinker structure (recipe section 1): one user turn with the image first,
then an instruction that explains the four response blocks and the scene-graph JSON with ``name.N`` ids (with one
worked example), a line ``Image size: (W x H)`` giving the ORIGINAL image size, the question, ``Options:`` and one
``(A) text`` line per option. There is no system prompt. The wording here is the project's own.

Images are scaled (aspect kept) so that their pixel count lies in ``[min_pixels, max_pixels]`` before the model's
processor sees them; boxes, the stated image size and the reward all stay in original-image pixels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

LETTERS = "ABCDEFGHIJ"

DEFAULT_TEMPLATE = (
    "Look at the image and answer the multiple-choice question. Write four blocks, each once.\n"
    "<observe> ... </observe>: say which parts of the image matter for the question.\n"
    "<scene> ... </scene>: the question-relevant scene graph as JSON, with objects and their boxes "
    '{{"objects": [{{"id": "name.1", "bbox": [x1, y1, x2, y2]}}], '
    '"relationships": [{{"subject": "name.1", "predicate": "relation", "object": "name.2"}}]}}. '
    "An id is the object name, a dot and a number (cup.1, cup.2). "
    "A box is the top-left and bottom-right corners in pixels of the image size given below.\n"
    "<think> ... </think>: reason step by step from the scene graph.\n"
    "<answer> ... </answer>: the option letter in brackets and the option text.\n"
    "Example: <observe>The cup and the table.</observe> "
    '<scene>{{"objects": [{{"id": "cup.1", "bbox": [40, 30, 80, 70]}}, '
    '{{"id": "table.1", "bbox": [10, 60, 200, 150]}}], '
    '"relationships": [{{"subject": "cup.1", "predicate": "on", "object": "table.1"}}]}}</scene> '
    "<think>The cup rests on the table.</think> <answer>(A) on</answer>\n"
    "Image size: ({width} x {height})\n"
    "{question}\n"
    "Options:\n"
    "{options}"
)
"""The default prompt text. Placeholders: ``{width}``, ``{height}`` (original image size), ``{question}`` (the
question without options) and ``{options}`` (one ``(A) text`` line per option). Literal braces are doubled."""

VANILLA_TEMPLATE = (
    "Look at the image and answer the multiple-choice question. First reason step by step inside <think> ... "
    "</think>, then give the option letter in brackets and the option text inside <answer> ... </answer>, "
    "for example <answer>(A) on</answer>.\n"
    "Image size: ({width} x {height})\n"
    "{question}\n"
    "Options:\n"
    "{options}"
)
"""The prompt of the paper's vanilla-GRPO baseline: ``<think>`` and ``<answer>`` only."""

TEMPLATES = {"spatialthinker": DEFAULT_TEMPLATE, "vanilla": VANILLA_TEMPLATE}

_PLACEHOLDERS = ("width", "height", "question", "options")


class PromptError(ValueError):
    """A template file or a sample that cannot make a prompt; the message names the file or the field."""


@dataclass
class PromptSettings:
    """How prompts and images are prepared (config section ``prompt``)."""

    template: str = "spatialthinker"
    """Built-in prompt: ``spatialthinker`` (observe, scene, think, answer) or ``vanilla`` (think and answer only, the
    paper's sparse baseline)."""

    template_file: str | None = None
    """A text file holding the prompt template (placeholders ``{width}``, ``{height}``, ``{question}``,
    ``{options}``; literal braces doubled); overrides ``template``."""

    min_pixels: int = 512 * 512
    """Images with fewer pixels are scaled up (aspect kept) to this pixel count before the processor (paper
    512*512; the CPU demo, ``cluster/configs/cpu_demo.yaml``, uses 56*56)."""

    max_pixels: int = 2048 * 2048
    """Images with more pixels are scaled down to this pixel count before the processor (paper 2048*2048; the CPU
    demo uses 112*112)."""

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ValueError(f"prompt.template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if not isinstance(self.min_pixels, int) or self.min_pixels < 1:
            raise ValueError(f"prompt.min_pixels must be a positive integer, got {self.min_pixels!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < self.min_pixels:
            raise ValueError(f"prompt.max_pixels must be an integer >= prompt.min_pixels, got {self.max_pixels!r}")
        if self.template_file is not None:
            load_template(self.template_file)


def load_template(path: str | Path) -> str:
    """Read and check a template file: every placeholder present, nothing else in braces."""
    p = Path(path)
    if not p.is_file():
        raise PromptError(f"prompt.template_file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    check_template(text, str(p))
    return text


def check_template(text: str, where: str = "template") -> None:
    names = {m.group(1) for m in re.finditer(r"(?<!\{)\{(\w*)\}(?!\})", text)}
    missing = [k for k in _PLACEHOLDERS if k not in names]
    unknown = sorted(names - set(_PLACEHOLDERS))
    if missing:
        raise PromptError(f"{where}: prompt template lacks placeholder(s) {', '.join('{' + k + '}' for k in missing)}")
    if unknown:
        raise PromptError(f"{where}: unknown placeholder(s) {', '.join('{' + k + '}' for k in unknown)}")


def format_options(options: list[str]) -> str:
    """``["left", "right"]`` -> ``"(A) left\\n(B) right"``."""
    return "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(options))


def answer_option_text(options: list[str], letter: str) -> str:
    """The paper's answer string for a correct option: ``(B) behind``."""
    return f"({letter}) {options[LETTERS.index(letter)]}"


def scaled_size(width: int, height: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(W, H) scaled with aspect kept so that W*H lies in [min_pixels, max_pixels]; unchanged if it already does."""
    area = width * height
    if min_pixels <= area <= max_pixels:
        return width, height
    target = min_pixels if area < min_pixels else max_pixels
    s = math.sqrt(target / area)
    w, h = max(1, round(width * s)), max(1, round(height * s))
    # rounding may step just outside the range; nudge the longer side back in
    while w * h > max_pixels and max(w, h) > 1:
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


class PromptBuilder:
    """Builds the chat messages and the model-ready image for one question."""

    def __init__(self, settings: PromptSettings | None = None):
        self.settings = settings or PromptSettings()
        self.template = (
            load_template(self.settings.template_file)
            if self.settings.template_file
            else TEMPLATES[self.settings.template]
        )

    def text(self, question: str, options: list[str], image_size: tuple[int, int]) -> str:
        """The user turn's text for a question (without options in it), its option texts and the original size."""
        if not options:
            raise PromptError("a question needs at least one option")
        if len(options) > len(LETTERS):
            raise PromptError(f"at most {len(LETTERS)} options are supported, got {len(options)}")
        width, height = image_size
        return self.template.format(
            width=int(width), height=int(height), question=question.strip(), options=format_options(options)
        )

    def messages(self, question: str, options: list[str], image_size: tuple[int, int]) -> list[dict]:
        """One user turn, image first, then the prompt text (no system prompt, as in the paper)."""
        return [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.text(question, options, image_size)}],
            }
        ]

    def image(self, image: Image.Image) -> Image.Image:
        """The image scaled into the configured pixel range (RGB)."""
        image = image.convert("RGB")
        size = scaled_size(image.width, image.height, self.settings.min_pixels, self.settings.max_pixels)
        return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
