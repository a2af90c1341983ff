"""Constants shared by the Python rules of :mod:`rewards` and the Numba fast path of :mod:`rewards.fast`.

The fast path imports nothing else from ``rewards``: what both sides must agree on lives here.
"""

from __future__ import annotations

EPS = 1e-7
"""The paper's epsilon in the union, in ``c^2`` and under the heights of CIoU (recipe section 2)."""

PAD_COST = 1e5
"""Cost of the dummy rows the paper's code adds when there are fewer predicted than ground-truth objects."""

MODE_PAPER = 0
"""Spatial rule of the paper: every matched ground-truth object earns its CIoU01, divided by the GT count."""

MODE_STRICT = 1
"""Spatial rule of the project's strict preset: only label-matched pairs earn CIoU01, divided by max(n_pred, n_gt)."""

SCAN_OK = 0
"""``status`` of a response the Numba reader scored."""

SCAN_FALLBACK = 1
"""``status`` of a response the Numba reader does not take (the caller scores it with the Python rules)."""

PAD = 16
"""Zero bytes every text buffer of the Numba reader carries after its end: it reads 8 bytes at a time."""
