"""The Numba fast path of the rewards: CIoU and the assignment solver (:mod:`rewards.fast.kernels`), the paper
preset's count and total formulas (:mod:`rewards.fast.terms`, the one copy both paths call) and the reader that
scores the common response and JSONL line end to end (:mod:`rewards.fast.scan`).

It depends on nothing in :mod:`rewards` but :mod:`rewards.constants`; the Python rules (:mod:`rewards.presets`)
call into it, never the other way round.
"""
