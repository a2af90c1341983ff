"""The STVQA schema: the published STVQA-7K columns, their ``datasets`` features and the dataset error type.

Kept apart from :mod:`datagen.stvqa` (the loader) and :mod:`datagen.build` (the writer) so that both can use it.
"""

from __future__ import annotations

from datasets import Features, Value
from datasets import Image as HFImage
from datasets import List as HFList

COLUMNS = (
    "image_id",
    "images",
    "problem",
    "question_only",
    "question_with_options",
    "options",
    "answer",
    "answer_only",
    "answer_text",
    "answer_text_only",
    "answer_option_text",
    "answer_option_text_only",
    "category",
    "level",
    "rating",
)
"""The published STVQA-7K columns, in the order this project writes them."""

TASK_COLUMNS = ("image_id", "images", "question_only", "options", "answer_option_text", "category")
"""Columns :func:`task_fields` needs; :func:`load_stvqa` requires them."""

SPLITS = ("train", "val")
"""Split names of the published dataset (and of the datasets this project builds)."""

SPLIT_ALIASES = {"validation": "val", "val": "validation", "valid": "val", "dev": "val"}
"""A requested split missing from a dataset is looked up under this other name before it is an error."""


class DatasetError(ValueError):
    """A dataset, split, column or row that cannot be used; the one-line message names the source and the problem."""


PASSES_COLUMN = "verify_passes"
"""Extra column of a verified dataset: how many of the verifier's tries answered the question right."""


def features(with_passes: bool = False) -> Features:
    """The ``datasets`` features of the STVQA schema (plus :data:`PASSES_COLUMN` when ``with_passes``)."""
    feats = Features(
        {
            "image_id": Value("string"),
            "images": HFList(HFImage()),
            "problem": Value("string"),
            "question_only": Value("string"),
            "question_with_options": Value("string"),
            "options": HFList(Value("string")),
            "answer": Value("string"),
            "answer_only": Value("string"),
            "answer_text": Value("string"),
            "answer_text_only": Value("string"),
            "answer_option_text": Value("string"),
            "answer_option_text_only": Value("string"),
            "category": Value("string"),
            "level": Value("string"),
            "rating": Value("int32"),
        }
    )
    if with_passes:
        feats[PASSES_COLUMN] = Value("int32")
    return feats
