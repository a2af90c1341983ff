"""Question-focused subgraphs and spatial question synthesis (STVQA).

Each synthesised sample holds a multiple-choice question, its answer letter
and the ground-truth scene subgraph that the question is about (objects with
boxes and the relationships among them); the spatial and count rewards are
computed against that subgraph.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from datagen.vg import VGImage

QUESTION_TYPES = ("relation", "position", "vertical", "distance", "size", "count", "existence")
SPATIAL_PREDICATES = ["left of", "right of", "above", "below", "on", "near", "under", "behind", "in front of", "next to"]
LETTERS = "ABCDEFGH"
QUESTION_PHRASES = [
    "What is the relationship between the {a} and the {b}?",
    "Is the {a} to the left or to the right of the {b}?",
    "Is the {a} above or below the {b}?",
    "Which is closer to the {a}: the {b} or the {c}?",
    "Which is larger in the image, the {a} or the {b}?",
    "How many {a} are there in the image?",
    "Is there a {a} in the image?",
]


@dataclass
class Sample:
    image_id: int
    question_type: str
    question: str
    options: list[str]
    answer: str  # option letter
    gt_objects: list[dict] = field(default_factory=list)  # {"id", "name", "bbox": [x1,y1,x2,y2]}
    gt_relationships: list[dict] = field(default_factory=list)  # {"subject", "predicate", "object"}

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]

    def prompt_text(self) -> str:
        opts = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(self.options))
        return f"{self.question}\nOptions: {opts}"


def question_subgraph(img: VGImage, anchors: list[int], hops: int = 1, max_objects: int = 8):
    """Anchors plus their ``hops``-neighbourhood in the scene graph (capped
    at ``max_objects``, anchors first), with the relations among them.
    Returns (objects, relationships) with ids like ``cup.1``."""
    keep = list(dict.fromkeys(anchors))
    frontier = set(keep)
    for _ in range(hops):
        nxt = set()
        for r in img.relations:
            if r.subject_id in frontier and r.object_id not in keep:
                nxt.add(r.object_id)
            if r.object_id in frontier and r.subject_id not in keep:
                nxt.add(r.subject_id)
        for o in sorted(nxt):
            if len(keep) < max_objects:
                keep.append(o)
        frontier = nxt
    names: dict[int, str] = {}
    counts: Counter = Counter()
    for oid in keep:
        o = img.objects[oid]
        counts[o.name] += 1
        names[oid] = f"{o.name}.{counts[o.name]}"
    objects = [
        {"id": names[oid], "name": img.objects[oid].name, "bbox": [round(v, 1) for v in img.objects[oid].box]}
        for oid in keep
    ]
    seen = set()
    rels = []
    for r in img.relations:
        if r.subject_id in names and r.object_id in names:
            key = (r.subject_id, r.predicate, r.object_id)
            if key not in seen:
                seen.add(key)
                rels.append({"subject": names[r.subject_id], "predicate": r.predicate, "object": names[r.object_id]})
    return objects, rels


def _mc(correct: str, distractors: list[str], rng: random.Random, n: int = 4) -> tuple[list[str], str]:
    opts = [correct] + [d for d in dict.fromkeys(distractors) if d != correct][: n - 1]
    rng.shuffle(opts)
    return opts, LETTERS[opts.index(correct)]


def synthesize_questions(
    img: VGImage,
    rng: random.Random,
    *,
    types: tuple[str, ...] = QUESTION_TYPES,
    max_per_image: int = 4,
    vocabulary: list[str] | None = None,
    max_objects: int = 8,
) -> list[Sample]:
    """Synthesize up to ``max_per_image`` unambiguous questions for one image."""
    bad = [t for t in types if t not in QUESTION_TYPES]
    if bad:
        raise ValueError(f"unknown question type(s) {bad}; choose from {list(QUESTION_TYPES)}")
    if not img.objects:
        return []
    name_counts = Counter(o.name for o in img.objects.values())
    unique = [o for o in img.objects.values() if name_counts[o.name] == 1 and o.area > 0]
    out: list[Sample] = []

    def add(qtype, question, options, answer, anchors):
        objs, rels = question_subgraph(img, anchors, max_objects=max_objects)
        out.append(Sample(img.image_id, qtype, question, options, answer, objs, rels))

    makers = list(types)
    rng.shuffle(makers)
    for qtype in makers * 2:
        if len(out) >= max_per_image:
            break
        if qtype == "relation":
            cands = [r for r in img.relations if img.objects[r.subject_id] in unique and img.objects[r.object_id] in unique]
            # only predicates that hold for exactly one ordered pair make unambiguous options
            if not cands:
                continue
            r = rng.choice(cands)
            a, b = img.objects[r.subject_id], img.objects[r.object_id]
            pool = [p for p in SPATIAL_PREDICATES + sorted({x.predicate for x in img.relations}) if p != r.predicate]
            others = {x.predicate for x in img.relations if x.subject_id == r.subject_id and x.object_id == r.object_id}
            pool = [p for p in pool if p not in others]
            rng.shuffle(pool)
            opts, ans = _mc(r.predicate, pool, rng)
            add(qtype, f"What is the relationship between the {a.name} and the {b.name}?", opts, ans, [a.object_id, b.object_id])
        elif qtype in ("position", "vertical") and len(unique) >= 2:
            a, b = rng.sample(unique, 2)
            axis = 0 if qtype == "position" else 1
            da = a.center[axis] - b.center[axis]
            extent = (a.w + b.w) / 4 if axis == 0 else (a.h + b.h) / 4
            if abs(da) < extent:
                continue
            if axis == 0:
                correct = "left" if da < 0 else "right"
                opts, ans = _mc(correct, ["right" if correct == "left" else "left"], rng, 2)
                q = f"Is the {a.name} to the left or to the right of the {b.name}?"
            else:
                correct = "above" if da < 0 else "below"
                opts, ans = _mc(correct, ["below" if correct == "above" else "above"], rng, 2)
                q = f"Is the {a.name} above or below the {b.name}?"
            add(qtype, q, opts, ans, [a.object_id, b.object_id])
        elif qtype == "distance" and len(unique) >= 3:
            a, b, c = rng.sample(unique, 3)
            db, dc = math.dist(a.center, b.center), math.dist(a.center, c.center)
            if min(db, dc) <= 0 or max(db, dc) / max(min(db, dc), 1e-6) < 1.3:
                continue
            correct, other = (b.name, c.name) if db < dc else (c.name, b.name)
            opts, ans = _mc(correct, [other], rng, 2)
            add(qtype, f"Which is closer to the {a.name}: the {b.name} or the {c.name}?", opts, ans, [a.object_id, b.object_id, c.object_id])
        elif qtype == "size" and len(unique) >= 2:
            a, b = rng.sample(unique, 2)
            ratio = max(a.area, b.area) / max(min(a.area, b.area), 1e-6)
            if ratio < 1.5:
                continue
            correct, other = (a.name, b.name) if a.area > b.area else (b.name, a.name)
            opts, ans = _mc(correct, [other], rng, 2)
            add(qtype, f"Which is larger in the image, the {a.name} or the {b.name}?", opts, ans, [a.object_id, b.object_id])
        elif qtype == "count":
            name = rng.choice(sorted(name_counts))
            n = name_counts[name]
            if n > 6:
                continue
            distract = [str(v) for v in (n + 1, n - 1, n + 2, n + 3) if v >= 0]
            opts, ans = _mc(str(n), distract, rng)
            anchors = [o.object_id for o in img.objects.values() if o.name == name]
            add(qtype, f"How many {name} are there in the image?", opts, ans, anchors)
        elif qtype == "existence":
            present = rng.random() < 0.5 or not vocabulary
            if present:
                o = rng.choice(list(img.objects.values()))
                opts, ans = _mc("yes", ["no"], rng, 2)
                add(qtype, f"Is there a {o.name} in the image?", opts, ans, [o.object_id])
            else:
                absent = [v for v in vocabulary if v not in name_counts]
                if not absent:
                    continue
                name = rng.choice(absent)
                opts, ans = _mc("no", ["yes"], rng, 2)
                # the scene subgraph for a "no" is the most salient objects
                biggest = sorted(img.objects.values(), key=lambda o: -o.area)[:2]
                add(qtype, f"Is there a {name} in the image?", opts, ans, [o.object_id for o in biggest])
    # de-duplicate identical questions
    uniq: dict[str, Sample] = {}
    for s in out:
        uniq.setdefault(s.question, s)
    return list(uniq.values())[:max_per_image]
