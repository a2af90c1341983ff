"""Spatial multiple-choice questions and question-focused scene subgraphs (STVQA).

The nine categories of the paper, each answered from the Visual Genome boxes and graph, never from guesses:

========================  ============================================================================
category                  how the answer is derived (functions in :mod:`datagen.geometry`)
========================  ============================================================================
``relation``              "Where is the A relative to the B?": a graph edge whose predicate (mapped to a
                          canonical geometric predicate by ``PREDICATE_ALIASES``) holds for the boxes, or
                          else a geometric predicate that holds strictly (:func:`relation_holds`)
``reach``                 "Can the person reach the A?" / "Which can the person reach, ...": box gap in
                          units of the person's box height (:func:`reachable`; near <= 0.3, far >= 0.8)
``size``                  larger / smaller / largest / smallest by box area (ratio >= ``SIZE_RATIO``)
``orientation``           box aspect: 1.5x wider than tall = horizontal (lying), 1.5x taller = vertical
``instance_location``     image quadrant of the box centre (centre away from the midlines)
``depth``                 closer to / farther from the camera: ground-plane proxy, a larger bottom y is
                          closer (bottoms differ by >= 10% of the image height)
``distance``              which of two objects is closer to / farther from a third: centre distances
                          (ratio >= ``DISTANCE_RATIO``)
``count``                 number of annotated instances of a name (names with overlapping duplicate
                          annotations are not asked about)
``existence``             "Is there a A <relation> the B?": yes if some A holds the relation strictly; no if
                          every A clearly fails it (not even loosely) or no A is annotated
========================  ============================================================================

Objects a question names by "the A" have a unique name in their image. Wrong options never hold even in the loose
sense of :func:`relation_holds`, and ambiguous cases (margins below the thresholds) are never asked.

The ground-truth scene of a question is its question-focused subgraph, by the paper's rule
(:func:`question_subgraph`): tokenise the question, lower-case it, add singular/plural and simple lemma forms of
every word; keep the objects whose name is among those words, and the relationships whose two ends are kept.
Because every question names its objects, the scene is never empty.

Difficulty is deterministic: ``rating`` = a per-category base + (options - 2) + 2 for a tight margin + 1 for a
scene of four or more objects, clamped to 1..10; ``level`` = easy (<= 3), medium (<= 6) or hard.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from datagen import geometry as geo
from datagen.vg import VGImage, VGObject

CATEGORIES = (
    "relation",
    "reach",
    "size",
    "orientation",
    "instance_location",
    "depth",
    "distance",
    "count",
    "existence",
)
"""The paper's nine question categories."""

QUESTION_TYPES = CATEGORIES
"""Older name of :data:`CATEGORIES`."""

SPATIAL_PREDICATES = list(geo.GEOMETRIC_PREDICATES)
"""Predicates that relation questions offer as options (each with a geometric definition)."""

LETTERS = "ABCDEFGHIJ"
"""Option letters, in order."""

TEMPLATES: dict[str, tuple[str, ...]] = {
    "relation": ("Where is the {a} relative to the {b}?", "What is the spatial relation of the {a} to the {b}?"),
    "reach": ("Can the {p} reach the {a}?", "Which can the {p} reach, the {a} or the {b}?"),
    "size": (
        "Which is larger in the image, the {a} or the {b}?",
        "Which is smaller in the image, the {a} or the {b}?",
        "Which appears largest in the image: the {a}, the {b} or the {c}?",
        "Which appears smallest in the image: the {a}, the {b} or the {c}?",
    ),
    "orientation": ("Is the {a} oriented horizontally or vertically?",),
    "instance_location": ("In which part of the image is the {a}?",),
    "depth": (
        "Which is closer to the camera, the {a} or the {b}?",
        "Which is farther from the camera, the {a} or the {b}?",
    ),
    "distance": (
        "Which is closer to the {a}, the {b} or the {c}?",
        "Which is farther from the {a}, the {b} or the {c}?",
    ),
    "count": ("How many {a} are there in the image?",),
    "existence": ("Is there {article} {a} {rel} the {b}?",),
}
"""Question wordings per category (``{a}``, ``{b}``, ``{c}``: object names, ``{p}``: a person-like name)."""

QUESTION_PHRASES = [t for ts in TEMPLATES.values() for t in ts]
"""Every question wording (used to train the tiny tokenizer)."""

ORIENTATION_OPTIONS = ("horizontally", "vertically")
"""Option texts of orientation questions."""

EXISTENCE_PHRASES = {
    "on": "on",
    "under": "under",
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
    "near": "near",
}
"""Predicates existence questions use, and how the question words them."""

PREDICATE_ALIASES = {
    "on": "on", "on top of": "on", "sitting on": "on", "standing on": "on", "lying on": "on", "resting on": "on",
    "laying on": "on", "parked on": "on", "placed on": "on", "under": "under", "underneath": "under",
    "beneath": "under", "below": "below", "above": "above", "over": "above", "left of": "left of",
    "to left of": "left of", "to the left of": "left of", "on left side of": "left of", "right of": "right of",
    "to right of": "right of", "to the right of": "right of", "on right side of": "right of", "near": "near",
    "next to": "near", "beside": "near", "by": "near", "close to": "near", "in front of": "in front of",
    "behind": "behind", "in back of": "behind", "far from": "far from",
}  # fmt: skip
"""VG predicates that name a geometric relation, mapped to the canonical predicate of :mod:`datagen.geometry`."""

PERSON_NAMES = frozenset(
    {
        "person",
        "man",
        "woman",
        "boy",
        "girl",
        "child",
        "kid",
        "lady",
        "guy",
        "player",
        "skier",
        "surfer",
        "skateboarder",
    }
)
"""Names treated as a person for reach questions."""

SIZE_RATIO = 1.5
"""Size questions: the answer's box area differs from the others' by at least this factor."""
DISTANCE_RATIO = 1.3
"""Distance questions: the farther centre distance is at least this factor of the nearer one."""

_BASE_RATING = {
    "existence": 2,
    "count": 3,
    "instance_location": 3,
    "size": 3,
    "orientation": 4,
    "relation": 4,
    "depth": 5,
    "distance": 5,
    "reach": 5,
}
_ATTEMPTS = 12

_IRREGULAR = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "foot": "feet", "tooth": "teeth",
    "mouse": "mice", "goose": "geese", "leaf": "leaves", "knife": "knives", "shelf": "shelves", "wolf": "wolves",
    "loaf": "loaves", "half": "halves", "life": "lives", "wife": "wives", "ox": "oxen", "sheep": "sheep",
    "fish": "fish", "deer": "deer", "ski": "skis", "taxi": "taxis",
}  # fmt: skip
_IRREGULAR_SINGULAR = {v: k for k, v in _IRREGULAR.items()}


@functools.lru_cache(maxsize=1 << 16)  # pure and called millions of times at VG scale
def pluralize(word: str) -> str:
    """Simple English plural of a noun (the last word of a phrase): ``cup`` -> ``cups``, ``bus`` -> ``buses``,
    ``berry`` -> ``berries``, ``man`` -> ``men``."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        p = _IRREGULAR[last]
    elif last in _IRREGULAR_SINGULAR:
        p = last
    elif re.search(r"(s|x|z|ch|sh)$", last):
        p = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


@functools.lru_cache(maxsize=1 << 16)  # pure and called millions of times at VG scale
def singularize(word: str) -> str:
    """Simple English singular (noun lemma) of a noun (the last word of a phrase): ``cups`` -> ``cup``,
    ``buses`` -> ``bus``, ``vases`` -> ``vase``, ``berries`` -> ``berry``, ``men`` -> ``man``; singular words
    come back unchanged."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR_SINGULAR:
        s = _IRREGULAR_SINGULAR[last]
    elif last in _IRREGULAR:
        s = last
    elif len(last) > 4 and re.search(r"[^aeiou]ies$", last):
        s = last[:-3] + "y"
    elif re.search(r"(sses|shes|ches|xes|zzes)$", last) or (last.endswith("uses") and not last.endswith("ouses")):
        s = last[:-2]
    elif len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        s = last[:-1]
    else:
        s = last
    return f"{head} {s}" if head else s


def word_forms(word: str) -> set[str]:
    """A word (or phrase) with its singular and plural forms; for a word ending in ``s`` also the other possible
    stems (``vases``: ``vase`` and ``vas``), so that matching errs on the side of keeping an object."""
    return set(_word_forms(word))


@functools.lru_cache(maxsize=1 << 16)
def _word_forms(word: str) -> frozenset[str]:
    forms = {word, singularize(word), pluralize(word), pluralize(singularize(word))}
    if len(word) > 3 and word.endswith("s"):
        forms.add(word[:-1])
        if word.endswith("es"):
            forms.add(word[:-2])
    return frozenset(forms)


def question_words(question: str, max_ngram: int = 3) -> set[str]:
    """The words of a question that an object name can match: lower-cased tokens and their phrases of up to
    ``max_ngram`` words, each with singular/plural forms of its last word."""
    tokens = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", question.lower())
    words: set[str] = set()
    for n in range(1, max_ngram + 1):
        for i in range(len(tokens) - n + 1):
            words |= _word_forms(" ".join(tokens[i : i + n]))
    return words


@functools.lru_cache(maxsize=1 << 16)  # pure and called millions of times at VG scale
def normalize_name(name: str) -> str:
    """An object name as matched against question words: lower case, ``_``/``-`` as spaces, single spaces."""
    return " ".join(re.sub(r"[_\-]+", " ", name.lower()).split())


def id_name(name: str) -> str:
    """The name part of a scene id (letters and underscores only): ``dining table`` -> ``dining_table``."""
    return re.sub(r"[^a-z]+", "_", name.lower()).strip("_") or "object"


def _px(v: float) -> int | float:
    r = round(v, 1)
    return int(r) if r == int(r) else r


def question_subgraph(img: VGImage, question: str) -> dict:
    """The question-focused scene graph of ``img`` by the paper's rule (see the module docstring).

    Returns ``{"objects": [{"id": "cup.1", "bbox": [x1, y1, x2, y2]}], "relationships": [{"subject", "predicate",
    "object"}]}`` with ids ``name.N`` numbered per name in file order and pixel boxes of the image.
    """
    words = question_words(question)
    kept: dict[int, str] = {}
    counts: Counter = Counter()
    for oid, o in img.objects.items():
        n = normalize_name(o.name)
        if n in words or singularize(n) in words:
            base = id_name(o.name)
            counts[base] += 1
            kept[oid] = f"{base}.{counts[base]}"
    objects = [{"id": kept[oid], "bbox": [_px(v) for v in img.objects[oid].box]} for oid in kept]
    rels, seen = [], set()
    for r in img.relations:
        if r.subject_id in kept and r.object_id in kept:
            key = (kept[r.subject_id], r.predicate, kept[r.object_id])
            if key not in seen:
                seen.add(key)
                rels.append({"subject": key[0], "predicate": key[1], "object": key[2]})
    return {"objects": objects, "relationships": rels}


@dataclass
class Question:
    """One multiple-choice question about one image, with the facts its answer was derived from."""

    category: str
    """One of :data:`CATEGORIES`."""
    question: str
    """The question text, without options."""
    options: list[str]
    """Option texts (2-4), in their final (seeded, shuffled) order."""
    answer_index: int
    """Index of the correct option."""
    object_ids: list[int] = field(default_factory=list)
    """VG ids of the objects the question is about, in the order the question names them."""
    facts: dict = field(default_factory=dict)
    """Category-specific details the answer rests on (e.g. ``predicate``, ``name``, ``ask``)."""
    tight: bool = False
    """The geometric margin is close to its threshold (raises the rating)."""

    @property
    def answer_letter(self) -> str:
        """The correct option's letter."""
        return LETTERS[self.answer_index]

    @property
    def answer_text(self) -> str:
        """The correct option's text."""
        return self.options[self.answer_index]


def difficulty(q: Question, n_scene_objects: int) -> tuple[str, int]:
    """Deterministic ``(level, rating)`` of a question (rule in the module docstring)."""
    rating = _BASE_RATING[q.category] + (len(q.options) - 2) + (2 if q.tight else 0)
    rating += 1 if n_scene_objects >= 4 else 0
    rating = max(1, min(10, rating))
    return ("easy" if rating <= 3 else "medium" if rating <= 6 else "hard"), rating


class _Scene:
    """Per-image lookups shared by the category generators."""

    def __init__(self, img: VGImage):
        self.img = img
        self.size = (img.width, img.height)
        self.by_key: dict[str, list[VGObject]] = {}
        for o in img.objects.values():
            if o.area > 0:
                self.by_key.setdefault(singularize(normalize_name(o.name)), []).append(o)
        self.unique = [objs[0] for objs in self.by_key.values() if len(objs) == 1]
        self.present = set(self.by_key)

    def key(self, o: VGObject) -> str:
        return singularize(normalize_name(o.name))


def _choose(rng: random.Random, correct: str, wrong: list[str], max_options: int = 4) -> tuple[list[str], int]:
    """Correct option plus 1..max_options-1 distinct wrong ones, shuffled with ``rng``."""
    wrong = [w for w in dict.fromkeys(wrong) if w != correct]
    k = rng.randint(1, min(max_options - 1, len(wrong)))
    opts = [correct] + rng.sample(wrong, k)
    rng.shuffle(opts)
    return opts, opts.index(correct)


def _relation(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    if len(s.unique) < 2:
        return None
    unique_ids = {o.object_id for o in s.unique}
    edges = []
    for r in s.img.relations:
        pred = PREDICATE_ALIASES.get(r.predicate)
        if pred and r.subject_id in unique_ids and r.object_id in unique_ids and r.subject_id != r.object_id:
            a, b = s.img.objects[r.subject_id], s.img.objects[r.object_id]
            if s.key(a) != s.key(b) and geo.relation_holds(pred, a.box, b.box, s.size):
                edges.append((a, pred, b, "graph"))
    rng.shuffle(edges)
    for _ in range(_ATTEMPTS):  # no usable graph edge: a predicate that holds for a random pair
        a, b = rng.sample(s.unique, 2)
        holding = [p for p in geo.GEOMETRIC_PREDICATES if geo.relation_holds(p, a.box, b.box, s.size)]
        if holding:
            edges.append((a, rng.choice(holding), b, "geometry"))
    for a, pred, b, source in edges:
        wrong = [p for p in geo.GEOMETRIC_PREDICATES if not geo.relation_holds(p, a.box, b.box, s.size, loose=True)]
        if not wrong:
            continue
        opts, ans = _choose(rng, pred, wrong)
        text = rng.choice(TEMPLATES["relation"]).format(a=a.name, b=b.name)
        facts = {"predicate": pred, "source": source}
        return Question("relation", text, opts, ans, [a.object_id, b.object_id], facts)
    return None


def _reach(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    people = [o for o in s.unique if s.key(o) in PERSON_NAMES]
    if not people:
        return None
    p = rng.choice(people)
    targets = [o for o in s.unique if o is not p and s.key(o) not in PERSON_NAMES]
    near = [o for o in targets if geo.reachable(p.box, o.box) is True]
    far = [o for o in targets if geo.reachable(p.box, o.box) is False]
    if near and far and rng.random() < 0.5:
        a, b = rng.choice(near), rng.choice(far)
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        opts = [first.name, second.name]
        text = TEMPLATES["reach"][1].format(p=p.name, a=first.name, b=second.name)
        ids = [p.object_id, first.object_id, second.object_id]
        return Question("reach", text, opts, opts.index(a.name), ids, {"reachable": a.object_id})
    pool = near + far
    if not pool:
        return None
    t = rng.choice(pool)
    yes = geo.reachable(p.box, t.box) is True
    opts = ["yes", "no"]
    rng.shuffle(opts)
    text = TEMPLATES["reach"][0].format(p=p.name, a=t.name)
    return Question("reach", text, opts, opts.index("yes" if yes else "no"), [p.object_id, t.object_id])


def _size(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    for _ in range(_ATTEMPTS):
        n = 3 if len(s.unique) >= 3 and rng.random() < 0.4 else 2
        if len(s.unique) < n:
            return None
        objs = rng.sample(s.unique, n)
        ask = rng.choice(("larger", "smaller"))
        ranked = sorted(objs, key=lambda o: o.area, reverse=(ask == "larger"))
        ratio = ranked[1].area / ranked[0].area if ask == "smaller" else ranked[0].area / ranked[1].area
        if ratio < SIZE_RATIO:
            continue
        names = [o.name for o in objs]
        if n == 2:
            template = TEMPLATES["size"][0 if ask == "larger" else 1]
            text = template.format(a=names[0], b=names[1])
        else:
            template = TEMPLATES["size"][2 if ask == "larger" else 3]
            text = template.format(a=names[0], b=names[1], c=names[2])
        opts = list(names)
        rng.shuffle(opts)
        facts = {"ask": ask}
        return Question(
            "size", text, opts, opts.index(ranked[0].name), [o.object_id for o in objs], facts, tight=ratio < 2.5
        )
    return None


def _orientation(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    cands = [o for o in s.unique if geo.orientation(o.box)]
    if not cands:
        return None
    o = rng.choice(cands)
    correct = "horizontally" if geo.orientation(o.box) == "horizontal" else "vertically"
    opts = list(ORIENTATION_OPTIONS)
    rng.shuffle(opts)
    aspect = max(o.w / o.h, o.h / o.w)
    text = TEMPLATES["orientation"][0].format(a=o.name)
    return Question("orientation", text, opts, opts.index(correct), [o.object_id], tight=aspect < 2.0)


def _instance_location(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    cands = [o for o in s.unique if geo.quadrant(o.box, s.size)]
    if not cands:
        return None
    o = rng.choice(cands)
    correct = geo.quadrant(o.box, s.size)
    opts, ans = _choose(rng, correct, [q for q in geo.QUADRANTS if q != correct])
    text = TEMPLATES["instance_location"][0].format(a=o.name)
    return Question("instance_location", text, opts, ans, [o.object_id])


def _depth(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    for _ in range(_ATTEMPTS):
        if len(s.unique) < 2:
            return None
        a, b = rng.sample(s.unique, 2)
        closer = geo.closer_to_camera(a.box, b.box, s.size)
        if closer is None:
            continue
        ask = rng.choice(("closer", "farther"))
        near_o, far_o = (a, b) if closer else (b, a)
        answer = near_o if ask == "closer" else far_o
        text = TEMPLATES["depth"][0 if ask == "closer" else 1].format(a=a.name, b=b.name)
        opts = [a.name, b.name]
        rng.shuffle(opts)
        tight = abs(a.box[3] - b.box[3]) < 2 * geo.DEPTH_MARGIN * s.size[1]
        return Question("depth", text, opts, opts.index(answer.name), [a.object_id, b.object_id], {"ask": ask}, tight)
    return None


def _distance(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    anchors = [o for o in s.unique if s.key(o) != "camera"]
    for _ in range(_ATTEMPTS):
        if len(s.unique) < 3 or not anchors:
            return None
        a = rng.choice(anchors)
        b, c = rng.sample([o for o in s.unique if o is not a], 2)
        db, dc = geo.center_distance(a.box, b.box), geo.center_distance(a.box, c.box)
        if min(db, dc) <= 0 or max(db, dc) / min(db, dc) < DISTANCE_RATIO:
            continue
        ask = rng.choice(("closer", "farther"))
        near_o, far_o = (b, c) if db < dc else (c, b)
        answer = near_o if ask == "closer" else far_o
        text = TEMPLATES["distance"][0 if ask == "closer" else 1].format(a=a.name, b=b.name, c=c.name)
        opts = [b.name, c.name]
        rng.shuffle(opts)
        tight = max(db, dc) / min(db, dc) < 1.6
        ids = [a.object_id, b.object_id, c.object_id]
        return Question("distance", text, opts, opts.index(answer.name), ids, {"ask": ask}, tight)
    return None


def _count(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    keys = sorted(s.by_key)
    rng.shuffle(keys)
    for key in keys:
        objs = s.by_key[key]
        n = len(objs)
        if n > 9 or any(geo.iou(x.box, y.box) > 0.5 for i, x in enumerate(objs) for y in objs[i + 1 :]):
            continue  # too many to ask, or duplicate annotations of one thing
        wrong = [str(v) for v in (n - 2, n - 1, n + 1, n + 2, n + 3) if v >= 0]
        opts, ans = _choose(rng, str(n), wrong)
        text = TEMPLATES["count"][0].format(a=pluralize(normalize_name(objs[0].name)))
        return Question("count", text, opts, ans, [o.object_id for o in objs], {"name": key}, tight=n >= 4)
    return None


def _existence(s: _Scene, rng: random.Random, vocabulary: list[str]) -> Question | None:
    for _ in range(_ATTEMPTS):
        if not s.unique:
            return None
        b = rng.choice(s.unique)
        pred = rng.choice(sorted(EXISTENCE_PHRASES))
        others = [k for k in s.by_key if k != s.key(b)]
        holds = [k for k in others if any(geo.relation_holds(pred, o.box, b.box, s.size) for o in s.by_key[k])]
        clearly_not = [
            k
            for k in others
            if not any(geo.relation_holds(pred, o.box, b.box, s.size, loose=True) for o in s.by_key[k])
        ]
        want_yes = rng.random() < 0.5
        if want_yes and holds:
            key, yes = rng.choice(sorted(holds)), True
            name = s.by_key[key][0].name
        elif clearly_not:
            key, yes = rng.choice(sorted(clearly_not)), False
            name = s.by_key[key][0].name
        else:  # rarely reached: the absent names are listed only here (the vocabulary can hold 10^5 names)
            absent = [v for v in vocabulary if singularize(normalize_name(v)) not in s.present]
            if not absent:
                continue
            name, yes = rng.choice(absent), False
            key = singularize(normalize_name(name))
        article = "an" if name[0] in "aeiou" else "a"
        text = TEMPLATES["existence"][0].format(article=article, a=name, rel=EXISTENCE_PHRASES[pred], b=b.name)
        opts = ["yes", "no"]
        rng.shuffle(opts)
        ids = [o.object_id for o in s.by_key.get(key, [])] + [b.object_id]
        facts = {"name": key, "predicate": pred, "object": b.object_id}
        return Question("existence", text, opts, opts.index("yes" if yes else "no"), ids, facts)
    return None


_GENERATORS = {
    "relation": _relation,
    "reach": _reach,
    "size": _size,
    "orientation": _orientation,
    "instance_location": _instance_location,
    "depth": _depth,
    "distance": _distance,
    "count": _count,
    "existence": _existence,
}


def make_question(
    img: VGImage, category: str, rng: random.Random, *, vocabulary: list[str] | tuple[str, ...] = ()
) -> Question | None:
    """One question of ``category`` about ``img``, or None when the image has no unambiguous one.

    ``rng`` decides which objects are asked about and the option order; ``vocabulary`` (object names of the whole
    dataset) supplies absent names for existence questions. Boxes are taken in the frame of ``img.width`` x
    ``img.height``.
    """
    return make_questions(img, {category: rng}, vocabulary=vocabulary)[category]


def make_questions(
    img: VGImage, rngs: dict[str, random.Random], *, vocabulary: list[str] | tuple[str, ...] = ()
) -> dict[str, Question | None]:
    """:func:`make_question` for several categories of one image (the per-image lookups are made once):
    ``rngs`` maps each category to its random generator; returns the question (or None) per category."""
    for category in rngs:
        if category not in _GENERATORS:
            raise ValueError(f"unknown question category {category!r}; choose from {', '.join(CATEGORIES)}")
    scene = _Scene(img)
    vocab = vocabulary if isinstance(vocabulary, (list, tuple)) else list(vocabulary)
    return {category: _GENERATORS[category](scene, rng, vocab) for category, rng in rngs.items()}
