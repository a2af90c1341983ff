"""Policy model, tokenizer and processor construction.

Everything here works offline: the CPU default is a tiny model with the
Qwen2.5-VL architecture built from a config, and a byte-level BPE tokenizer
trained locally on text that looks like the SpatialThinker task (template
tags, scene-graph JSON, VG object names and question wording), which the
caller passes in (:func:`datagen.corpus.tokenizer_corpus`): learner nodes
load models and never need the data generator.  A real
checkpoint directory (for example a local copy of Qwen2.5-VL-3B-Instruct)
can be used instead by pointing ``model.path`` at it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from actors.records import EncodedPrompt, ImageInputs

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Template tags are whole tokens so a tiny policy can learn the format fast.
TEMPLATE_TOKENS = [
    "<observe>",
    "</observe>",
    "<scene>",
    "</scene>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Image resolution bounds used by the processor for the tiny default.  Each
# merged 28x28 block becomes one <|image_pad|> token.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 16


@dataclass
class TinyModelSpec:
    """Dimensions of the tiny Qwen2.5-VL-architecture model (head_dim = hidden_size / num_heads must be 64 or 128,
    the sizes vLLM's CPU attention supports)."""

    hidden_size: int = 128
    """Text hidden size."""
    num_layers: int = 2
    """Text decoder layers."""
    num_heads: int = 2
    """Attention heads (head_dim 64 at hidden 128)."""
    num_kv_heads: int = 1
    """Key/value heads (grouped-query attention, as in Qwen2.5-VL)."""
    intermediate_size: int = 256
    """MLP width."""
    vision_hidden_size: int = 64
    """Vision tower hidden size."""
    vision_depth: int = 2
    """Vision tower blocks."""
    vision_heads: int = 1
    """Vision attention heads."""
    vocab_size: int = 1024
    """BPE vocabulary trained on task-like text (template tags and special tokens come on top)."""
    seed: int = 0
    """Weight initialisation seed."""
    tie_word_embeddings: bool = False
    """Tie ``lm_head`` to the input embedding (Qwen2.5-VL-3B does; the weight sync must send the pair once)."""


def train_tokenizer(out_dir: str | os.PathLike, corpus: Iterable[str], vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer on ``corpus`` (task-like text: :func:`datagen.corpus.tokenizer_corpus`) and
    save it as a transformers fast tokenizer with the Qwen chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.add_tokens(TEMPLATE_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: str | os.PathLike, corpus: Iterable[str], spec: TinyModelSpec | None = None) -> str:
    """Create a tiny Qwen2.5-VL-architecture checkpoint (random weights),
    tokenizer (trained on ``corpus``, see :func:`train_tokenizer`) and processor
    config in ``out_dir``.  Idempotent: an existing complete checkpoint is left
    untouched."""
    spec = spec or TinyModelSpec()
    out = Path(out_dir)
    marker = out / "tiny_model_spec.json"
    if marker.exists() and (out / "config.json").exists():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out, corpus, vocab_size=spec.vocab_size)
    vocab = len(tokenizer)
    vocab_padded = ((vocab + 63) // 64) * 64
    head_dim = spec.hidden_size // spec.num_heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_padded,
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "mrope_section": mrope, "rope_theta": 10000.0},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_hidden_size,
            intermediate_size=spec.vision_hidden_size * 2,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[spec.vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec.tie_word_embeddings,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    _image_processor(TINY_MIN_PIXELS, TINY_MAX_PIXELS).save_pretrained(out)
    marker.write_text(json.dumps(spec.__dict__, indent=2))
    return str(out)


def _image_processor(min_pixels: int, max_pixels: int):
    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


def check_model_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model directory {p} does not exist; build one with scripts/build_tiny_model.py")
    missing = [f for f in ("config.json", "tokenizer_config.json") if not (p / f).exists()]
    if missing:
        raise FileNotFoundError(f"model directory {p} is missing {', '.join(missing)}")
    return p


def load_policy(path: str | os.PathLike, dtype: str = "float32"):
    p = check_model_dir(path)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForImageTextToText.from_pretrained(str(p), dtype=torch_dtype)
    return model


class PromptEncoder:
    """Turns (messages, images) into model inputs for the Qwen2.5-VL family.

    Uses the PIL image processor (no torchvision needed) and expands each
    ``<|image_pad|>`` into the number of merged patch tokens the image gets.
    """

    def __init__(self, path: str | os.PathLike):
        p = check_model_dir(path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(p))
        self.tokenizer.padding_side = "left"
        saved = p / "preprocessor_config.json"
        processor_json = json.loads(saved.read_text()) if saved.exists() else {}
        size = processor_json.get("size", {})
        self.image_processor = _image_processor(
            processor_json.get("min_pixels", size.get("shortest_edge", TINY_MIN_PIXELS)),
            processor_json.get("max_pixels", size.get("longest_edge", TINY_MAX_PIXELS)),
        )
        self.merge = int(getattr(self.image_processor, "merge_size", 2))
        self.image_token = "<|image_pad|>"
        self.eos_token_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_token_id = self.tokenizer.pad_token_id
        # tokens a response must never contain: they would be read as image slots
        self.forbidden_ids = sorted(
            {
                self.tokenizer.convert_tokens_to_ids(t)
                for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>")
            }
            - {None, self.tokenizer.unk_token_id}
        )

    def encode(self, messages: list[dict], images: Iterable[Any]) -> EncodedPrompt:
        """Encode one prompt: token ids with each image placeholder expanded to the image's merged-patch count,
        and the processed image tensors (once)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [im.convert("RGB") for im in images]
        n_slots = text.count(self.image_token)
        if n_slots != len(images):
            raise ValueError(f"prompt has {n_slots} image slots but {len(images)} images were given")
        pixel_values = grid = None
        if images:
            out = self.image_processor(images=images, return_tensors="pt")
            pixel_values, grid = out["pixel_values"], out["image_grid_thw"]
            pieces = text.split(self.image_token)
            text = pieces[0]
            for i, rest in enumerate(pieces[1:]):
                n = int(grid[i].prod().item()) // (self.merge**2)
                text += self.image_token * n + rest
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return EncodedPrompt(ids, ImageInputs(pixel_values, grid) if images else None)

    def decode(self, ids) -> str:
        return (
            self.tokenizer.decode(ids, skip_special_tokens=False)
            .replace("<|im_end|>", "")
            .replace("<|endoftext|>", "")
        )
