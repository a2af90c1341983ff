"""Text the tiny model's tokenizer is trained on (:func:`actors.model.train_tokenizer`), from the data generator's
own vocabulary: VG object names, spatial predicates, question wording and the response template."""

from __future__ import annotations

from datagen.questions import QUESTION_PHRASES, SPATIAL_PREDICATES
from datagen.synthetic import OBJECT_VOCAB
from rewards.prompt import DEFAULT_TEMPLATE


def tokenizer_corpus() -> list[str]:
    """Task-like text for the tiny model's BPE tokenizer: a template response per object and predicate, the
    question wording and the prompt's instruction (each seen often, so each gets short tokens)."""
    lines: list[str] = []
    names = list(OBJECT_VOCAB)
    for i, name in enumerate(names):
        other = names[(i + 3) % len(names)]
        for pred in SPATIAL_PREDICATES:
            lines.append(
                f"<observe>I see a {name} {pred} the {other}.</observe>"
                f'<scene>{{"objects": [{{"id": "{name}.1", "bbox": [{i * 7 % 200}, {i * 13 % 200}, '
                f'{i * 7 % 200 + 20}, {i * 13 % 200 + 30}]}}, {{"id": "{other}.2", "bbox": [1, 2, 30, 40]}}], '
                f'"relationships": [{{"subject": "{name}.1", "predicate": "{pred}", "object": "{other}.2"}}]}}'
                f"</scene><think>The {name} is {pred} the {other}, so the answer is (A).</think>"
                f"<answer>(A)</answer>"
            )
    for phrase in QUESTION_PHRASES:
        lines.append(phrase)
    # the prompt's fixed instruction text is seen on every sample: give it short tokens
    lines.extend([DEFAULT_TEMPLATE] * 20)
    lines.append(" ".join(str(n) for n in range(0, 1000)))
    lines.append("Options: (A) (B) (C) (D) yes no left right above below closer farther larger smaller")
    return lines
