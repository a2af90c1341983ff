"""The reward presets, one module each, behind one interface.

A preset module defines ``NAME`` and ``score(items, cfg) -> rows``: ``items`` are ``(response, ground_truth,
image_size)`` tuples or mappings with those keys, ``cfg`` a :class:`rewards.config.RewardConfig`, and each row is
``[total, format, count, accuracy, spatial, error]`` (:data:`rewards.truth.ROW_FIELDS`). A preset never raises for
bad input: an item it cannot score gets :func:`rewards.truth.sample_error_row`. :func:`rewards.spatial.score_rows`
picks the preset by ``cfg.preset`` and guards the call.

Adding a preset is one module and one entry in :data:`SCORERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rewards.presets import spatialthinker, strict, vanilla

SCORERS: dict[str, Callable[[Sequence, object], list]] = {
    spatialthinker.NAME: spatialthinker.score,
    strict.NAME: strict.score,
    vanilla.NAME: vanilla.score,
}
"""Preset name -> its ``score`` function."""

PRESETS = tuple(SCORERS)
"""Accepted values of ``RewardConfig.preset``."""
