"""Box geometry behind every generated answer.

Boxes are pixel corners ``(x1, y1, x2, y2)`` in the image frame (x grows to the right, y grows downwards), with
``x1 <= x2`` and ``y1 <= y2``. Every answer the question generator writes is derived from the functions here, and
the tests check the answers against them.

Spatial predicates have two forms:

- strict (``loose=False``): the statement clearly holds. A correct option must hold strictly.
- loose (``loose=True``): the statement could be argued to hold. A wrong option must NOT hold even loosely, so no
  option is arguably right besides the answer. Strict always implies loose.

Visual Genome has no depth, orientation or reach labels, so those are geometry proxies (see
:mod:`datagen.questions` for the full list):

- depth: the ground-plane cue. The object whose box reaches lower in the image (larger bottom ``y2``) is closer to
  the camera; "in front of" / "behind" use the same cue.
- orientation: the box aspect ratio. Wider than tall by ``ORIENTATION_RATIO`` = horizontal (lying), taller than wide
  by that ratio = vertical (upright); anything squarer is not asked about.
- reach: the gap between a person's box and the target's box, measured in units of the person's box height
  (a stand-in for the person's size): within ``REACH_NEAR`` heights = reachable, beyond ``REACH_FAR`` = not.
- instance location: the quadrant of the image that holds the box centre, asked only when the centre is at least
  ``QUADRANT_MARGIN`` of the image size away from both midlines.
"""

from __future__ import annotations

import math

Box = tuple[float, float, float, float]

GEOMETRIC_PREDICATES = (
    "left of",
    "right of",
    "above",
    "below",
    "on",
    "under",
    "in front of",
    "behind",
    "near",
    "far from",
)
"""Predicates with a geometric definition in :func:`relation_holds` (the relation category's option texts)."""

NEAR_GAP = 0.10
"""``near`` holds strictly when the boxes' gap is at most this fraction of the image diagonal."""
FAR_GAP = 0.35
"""``far from`` holds strictly when the boxes' gap is at least this fraction of the image diagonal."""
LOOSE_GAP = 0.20
"""Loose form of both ``near`` (gap <= this) and ``far from`` (gap >= this), as a fraction of the diagonal."""
DEPTH_MARGIN = 0.10
"""Depth / "in front of": the bottom edges must differ by at least this fraction of the image height."""
ORIENTATION_RATIO = 1.5
"""A box this many times wider than tall is horizontal; this many times taller than wide is vertical."""
REACH_NEAR = 0.3
"""A target whose box gap to the person is at most this many person-box heights is within reach."""
REACH_FAR = 0.8
"""A target whose box gap to the person is at least this many person-box heights is out of reach."""
QUADRANT_MARGIN = 0.08
"""Instance location: the box centre must be this fraction of the width/height away from the image midlines."""

QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
"""Option texts of the instance-location category."""


def width(b: Box) -> float:
    """Box width in pixels."""
    return b[2] - b[0]


def height(b: Box) -> float:
    """Box height in pixels."""
    return b[3] - b[1]


def area(b: Box) -> float:
    """Box area in square pixels."""
    return width(b) * height(b)


def center(b: Box) -> tuple[float, float]:
    """Box centre ``(cx, cy)``."""
    return ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)


def center_distance(a: Box, b: Box) -> float:
    """Euclidean distance between the box centres."""
    return math.dist(center(a), center(b))


def gap(a: Box, b: Box) -> float:
    """Euclidean distance between the two boxes (0 when they touch or overlap)."""
    dx = max(0.0, b[0] - a[2], a[0] - b[2])
    dy = max(0.0, b[1] - a[3], a[1] - b[3])
    return math.hypot(dx, dy)


def horizontal_overlap(a: Box, b: Box) -> float:
    """Length of the overlap of the boxes' x ranges (0 when disjoint)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0]))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def diagonal(image_size: tuple[int, int]) -> float:
    """Length of the image diagonal."""
    return math.hypot(image_size[0], image_size[1])


def _left_of(a: Box, b: Box, loose: bool) -> bool:
    (acx, acy), (bcx, bcy) = center(a), center(b)
    dx, dy = bcx - acx, bcy - acy
    if loose:
        return dx > 0
    return dx > abs(dy) and a[2] <= b[0] + 0.25 * min(width(a), width(b))


def _above(a: Box, b: Box, loose: bool) -> bool:
    (acx, acy), (bcx, bcy) = center(a), center(b)
    dx, dy = bcx - acx, bcy - acy
    if loose:
        return dy > 0
    return dy > abs(dx) and a[3] <= b[1] + 0.25 * min(height(a), height(b))


def _on(a: Box, b: Box, loose: bool) -> bool:
    ov = horizontal_overlap(a, b)
    if loose:
        return ov > 0 and center(a)[1] < center(b)[1] and a[3] >= b[1] - max(4.0, 0.25 * height(a))
    tol = max(2.0, 0.05 * height(a))
    return ov >= 0.5 * min(width(a), width(b)) and a[1] < b[1] and b[1] - tol <= a[3] <= b[1] + 0.5 * height(b)


def _in_front_of(a: Box, b: Box, image_size: tuple[int, int], loose: bool) -> bool:
    if loose:
        return a[3] > b[3]
    return a[3] - b[3] >= DEPTH_MARGIN * image_size[1] and horizontal_overlap(a, b) > 0


def relation_holds(pred: str, a: Box, b: Box, image_size: tuple[int, int], *, loose: bool = False) -> bool:
    """Whether "a ``pred`` b" holds for boxes ``a`` (subject) and ``b`` (object) in an image of ``(W, H)``.

    Definitions (strict form; see the module docstring for strict vs loose):

    - ``left of``: b's centre is further right of a's than it is above/below, and a ends (nearly) before b starts;
      ``right of`` is the mirror. Loose: a's centre is left of b's.
    - ``above``: the same on the vertical axis; ``below`` is the mirror. Loose: a's centre is above b's.
    - ``on``: a overlaps b horizontally by half the narrower width, starts above b's top and its bottom edge lies
      within a small tolerance above b's top edge or in the upper half of b; ``under`` is the mirror.
    - ``in front of``: a's bottom edge is at least ``DEPTH_MARGIN`` of the image height lower than b's and the boxes
      overlap horizontally (the ground-plane depth proxy); ``behind`` is the mirror. Loose: a's bottom is lower.
    - ``near`` / ``far from``: the gap between the boxes relative to the image diagonal.
    """
    if pred == "left of":
        return _left_of(a, b, loose)
    if pred == "right of":
        return _left_of(b, a, loose)
    if pred == "above":
        return _above(a, b, loose)
    if pred == "below":
        return _above(b, a, loose)
    if pred == "on":
        return _on(a, b, loose)
    if pred == "under":
        return _on(b, a, loose)
    if pred == "in front of":
        return _in_front_of(a, b, image_size, loose)
    if pred == "behind":
        return _in_front_of(b, a, image_size, loose)
    g = gap(a, b) / diagonal(image_size)
    if pred == "near":
        return g <= (LOOSE_GAP if loose else NEAR_GAP)
    if pred == "far from":
        return g >= (LOOSE_GAP if loose else FAR_GAP)
    raise ValueError(f"no geometric definition for predicate {pred!r}; known: {', '.join(GEOMETRIC_PREDICATES)}")


def closer_to_camera(a: Box, b: Box, image_size: tuple[int, int]) -> bool | None:
    """Depth proxy: True if a is clearly closer to the camera than b (bottom edge lower by ``DEPTH_MARGIN`` of the
    image height), False if clearly farther, None if the bottoms are too close to tell."""
    d = a[3] - b[3]
    if abs(d) < DEPTH_MARGIN * image_size[1]:
        return None
    return d > 0


def orientation(b: Box) -> str | None:
    """Orientation proxy: ``"horizontal"`` for a box ``ORIENTATION_RATIO`` times wider than tall, ``"vertical"`` for
    one that many times taller than wide, None otherwise."""
    w, h = width(b), height(b)
    if w >= ORIENTATION_RATIO * h:
        return "horizontal"
    if h >= ORIENTATION_RATIO * w:
        return "vertical"
    return None


def reachable(person: Box, target: Box) -> bool | None:
    """Reach proxy: True if the target's box is within ``REACH_NEAR`` person-box heights of the person's box, False
    if it is at least ``REACH_FAR`` heights away, None in between."""
    g = gap(person, target) / max(height(person), 1e-6)
    if g <= REACH_NEAR:
        return True
    if g >= REACH_FAR:
        return False
    return None


def quadrant(b: Box, image_size: tuple[int, int]) -> str | None:
    """Instance-location proxy: the image quadrant (one of ``QUADRANTS``) holding the box centre, or None when the
    centre is within ``QUADRANT_MARGIN`` of a midline."""
    w, h = image_size
    cx, cy = center(b)
    if abs(cx - w / 2) < QUADRANT_MARGIN * w or abs(cy - h / 2) < QUADRANT_MARGIN * h:
        return None
    return f"{'top' if cy < h / 2 else 'bottom'} {'left' if cx < w / 2 else 'right'}"
