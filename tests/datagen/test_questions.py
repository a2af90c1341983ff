"""Question synthesis: every category's answer agrees with the geometry; the subgraph rule; word forms."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from datagen import geometry as geo
from datagen.questions import (
    CATEGORIES,
    QUESTION_PHRASES,
    SPATIAL_PREDICATES,
    make_question,
    pluralize,
    question_subgraph,
    question_words,
    singularize,
)
from datagen.synthetic import OBJECT_VOCAB
from datagen.vg import VGImage, VGObject, VGRelation
from tests.datagen.helpers import check_answer, check_scene


def _img(objects, relations=(), size=(400, 300)) -> VGImage:
    img = VGImage(image_id=1, width=size[0], height=size[1], image_path=None)
    for i, (name, box) in enumerate(objects):
        x1, y1, x2, y2 = box
        img.objects[i] = VGObject(i, name, x1, y1, x2 - x1, y2 - y1)
    img.relations = [VGRelation(k, p, s, o) for k, (s, p, o) in enumerate(relations)]
    return img


def test_public_names():
    assert "person" in OBJECT_VOCAB and len(OBJECT_VOCAB) == len(set(OBJECT_VOCAB))
    assert all(isinstance(p, str) and p for p in QUESTION_PHRASES) and len(QUESTION_PHRASES) >= 9
    assert {"left of", "on", "behind", "in front of"} <= set(SPATIAL_PREDICATES)


def test_strict_implies_loose_and_mirrors():
    rng = random.Random(0)
    size = (300, 200)
    for _ in range(3000):
        boxes = []
        for _ in range(2):
            x, y = rng.uniform(0, 280), rng.uniform(0, 180)
            boxes.append((x, y, x + rng.uniform(1, 300 - x), y + rng.uniform(1, 200 - y)))
        a, b = boxes
        for p in geo.GEOMETRIC_PREDICATES:
            if geo.relation_holds(p, a, b, size):
                assert geo.relation_holds(p, a, b, size, loose=True), (p, a, b)
        for p, q in (("left of", "right of"), ("above", "below"), ("on", "under"), ("in front of", "behind")):
            assert geo.relation_holds(p, a, b, size) == geo.relation_holds(q, b, a, size)
            assert not (geo.relation_holds(p, a, b, size) and geo.relation_holds(q, a, b, size, loose=True))


def test_proxies_by_hand():
    size = (400, 300)
    assert geo.orientation((0, 0, 60, 20)) == "horizontal" and geo.orientation((0, 0, 20, 60)) == "vertical"
    assert geo.orientation((0, 0, 20, 25)) is None
    assert (
        geo.quadrant((10, 10, 50, 50), size) == "top left"
        and geo.quadrant((300, 250, 390, 290), size) == "bottom right"
    )
    assert geo.quadrant((180, 10, 220, 50), size) is None
    person = (100, 50, 140, 250)  # 200 px tall
    assert geo.reachable(person, (150, 200, 170, 220)) is True  # 10 px away
    assert geo.reachable(person, (320, 200, 340, 220)) is False  # 180 px away
    assert geo.reachable(person, (230, 200, 250, 220)) is None  # 90 px: ambiguous
    assert geo.closer_to_camera((0, 200, 10, 290), (0, 50, 10, 150), size) is True
    assert geo.closer_to_camera((0, 200, 10, 150), (0, 50, 10, 149), size) is None
    assert geo.relation_holds("on", (150, 60, 190, 100), (100, 100, 300, 200), size)
    assert geo.relation_holds("left of", (0, 100, 50, 150), (200, 100, 250, 150), size)
    with pytest.raises(ValueError, match="no geometric definition"):
        geo.relation_holds("wearing", (0, 0, 1, 1), (0, 0, 1, 1), size)


@pytest.mark.parametrize(
    ("singular", "plural"),
    [("cup", "cups"), ("bus", "buses"), ("berry", "berries"), ("man", "men"), ("person", "people"),
     ("bench", "benches"), ("glass", "glasses"), ("knife", "knives"), ("tennis racket", "tennis rackets"),
     ("toy", "toys"), ("vase", "vases"), ("horse", "horses"), ("house", "houses"), ("box", "boxes"),
     ("short", "shorts"), ("ski", "skis")],
)  # fmt: skip
def test_word_forms(singular, plural):
    assert pluralize(singular) == plural
    assert singularize(plural) == singular
    assert singularize(singular) == singular


VG150_NAMES = [
    "airplane",
    "animal",
    "arm",
    "bag",
    "banana",
    "basket",
    "beach",
    "bear",
    "bed",
    "bench",
    "bike",
    "bird",
    "board",
    "boat",
    "book",
    "boot",
    "bottle",
    "bowl",
    "box",
    "boy",
    "branch",
    "building",
    "bus",
    "cabinet",
    "cap",
    "car",
    "cat",
    "chair",
    "child",
    "clock",
    "coat",
    "counter",
    "cow",
    "cup",
    "curtain",
    "desk",
    "dog",
    "door",
    "drawer",
    "ear",
    "elephant",
    "engine",
    "eye",
    "face",
    "fence",
    "finger",
    "flag",
    "flower",
    "food",
    "fork",
    "fruit",
    "giraffe",
    "girl",
    "glass",
    "glove",
    "guy",
    "hair",
    "hand",
    "handle",
    "hat",
    "head",
    "helmet",
    "hill",
    "horse",
    "house",
    "jacket",
    "jean",
    "kid",
    "kite",
    "lady",
    "lamp",
    "laptop",
    "leaf",
    "leg",
    "letter",
    "light",
    "logo",
    "man",
    "men",
    "motorcycle",
    "mountain",
    "mouth",
    "neck",
    "nose",
    "number",
    "orange",
    "pant",
    "paper",
    "paw",
    "people",
    "person",
    "phone",
    "pillow",
    "pizza",
    "plane",
    "plant",
    "plate",
    "player",
    "pole",
    "post",
    "pot",
    "racket",
    "railing",
    "rock",
    "roof",
    "room",
    "screen",
    "seat",
    "sheep",
    "shelf",
    "shirt",
    "shoe",
    "short",
    "sidewalk",
    "sign",
    "sink",
    "skateboard",
    "ski",
    "skier",
    "sneaker",
    "snow",
    "sock",
    "stand",
    "street",
    "surfboard",
    "table",
    "tail",
    "tie",
    "tile",
    "tire",
    "toilet",
    "towel",
    "tower",
    "track",
    "train",
    "tree",
    "truck",
    "trunk",
    "umbrella",
    "vase",
    "vegetable",
    "vehicle",
    "wave",
    "wheel",
    "window",
    "windshield",
    "wing",
    "wire",
    "woman",
    "zebra",
]


def test_word_forms_cover_vg150_names():
    assert len(VG150_NAMES) == 150
    for name in VG150_NAMES + OBJECT_VOCAB:
        plural = pluralize(name)
        assert name in question_words(f"How many {plural} are there?"), name
        assert name in question_words(f"Is the {name} on the left?"), name
        if name not in ("men", "people"):  # VG150 also names these plurals
            assert singularize(plural) == name, (name, plural)


def test_subgraph_rule():
    img = _img(
        [
            ("cup", (10, 10, 30, 30)),
            ("cup", (40, 10, 60, 30)),
            ("table", (0, 30, 200, 120)),
            ("chair", (210, 50, 260, 150)),
            ("man", (270, 20, 310, 200)),
            ("dining table", (0, 200, 200, 290)),
        ],
        relations=[(0, "on", 2), (1, "on", 2), (3, "near", 2), (4, "sitting on", 3), (0, "on", 2)],
    )
    scene = question_subgraph(img, "How many Cups are there on the table?")
    assert [o["id"] for o in scene["objects"]] == ["cup.1", "cup.2", "table.1"]
    assert scene["objects"][0]["bbox"] == [10, 10, 30, 30]
    # relations whose both ends are kept, duplicates once; the chair's relation is left out
    assert scene["relationships"] == [
        {"subject": "cup.1", "predicate": "on", "object": "table.1"},
        {"subject": "cup.2", "predicate": "on", "object": "table.1"},
    ]
    # plural / lemma forms and multi-word names
    # (the single word "tables" names the table too: the rule works on words)
    scene = question_subgraph(img, "Are the men near the dining tables?")
    assert [o["id"] for o in scene["objects"]] == ["table.1", "man.1", "dining_table.1"]
    scene = question_subgraph(img, "Is the chair left of the man?")
    assert [o["id"] for o in scene["objects"]] == ["chair.1", "man.1"]
    assert scene["relationships"] == [{"subject": "man.1", "predicate": "sitting on", "object": "chair.1"}]
    assert question_subgraph(img, "What colour is the sky?") == {"objects": [], "relationships": []}
    assert {"cup", "cups", "table", "on the table"} <= question_words("How many cups are there on the table?")


def test_every_category_answer_matches_geometry(vg_images):
    vocabulary = sorted({o.name for img in vg_images for o in img.objects.values()})
    made = Counter()
    for img in vg_images:
        for cat in CATEGORIES:
            for k in range(3):
                q = make_question(img, cat, random.Random(f"{img.image_id}:{cat}:{k}"), vocabulary=vocabulary)
                if q is None:
                    continue
                made[cat] += 1
                assert q.category == cat
                check_answer(cat, q.question, q.options, q.answer_text, img)
                check_scene(question_subgraph(img, q.question), q.question, img)
    assert set(made) == set(CATEGORIES), made
    assert min(made.values()) >= 20, made


def test_existence_and_relation_cover_both_outcomes(vg_images):
    vocabulary = sorted({o.name for img in vg_images for o in img.objects.values()})
    answers = Counter()
    sources = Counter()
    for img in vg_images:
        for k in range(4):
            q = make_question(img, "existence", random.Random(k), vocabulary=vocabulary)
            if q:
                answers[q.answer_text] += 1
            r = make_question(img, "relation", random.Random(k), vocabulary=vocabulary)
            if r:
                sources[r.facts["source"]] += 1
    assert answers["yes"] > 10 and answers["no"] > 10
    assert sources["graph"] > 10


def test_hand_made_scene_answers():
    img = _img(
        [
            ("person", (20, 60, 60, 260)),
            ("cup", (65, 150, 85, 170)),
            ("tree", (300, 20, 380, 100)),
            ("box", (100, 240, 220, 280)),
        ]
    )
    rng = random.Random(0)
    q = None
    for k in range(20):
        q = make_question(img, "reach", random.Random(k))
        if q.question == "Can the person reach the cup?":
            break
    assert q.answer_text == "yes"
    q = make_question(img, "orientation", rng)
    assert q.answer_text == {"person": "vertically", "box": "horizontally"}[q.question.split("the ")[1].split(" ")[0]]
    q = make_question(img, "count", random.Random(1))
    assert q.answer_text == "1"


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown question category 'colour'"):
        make_question(_img([("cup", (0, 0, 10, 10))]), "colour", random.Random(0))


def test_no_question_without_objects():
    img = _img([])
    for cat in CATEGORIES:
        assert make_question(img, cat, random.Random(0), vocabulary=["cup"]) is None
