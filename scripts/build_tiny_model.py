#!/usr/bin/env python
"""Build the tiny Qwen2.5-VL-architecture model and tokenizer offline.

python scripts/build_tiny_model.py --out models/tiny
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden-size", type=int, default=128, help="128 or 256 (head_dim 64 or 128 for vLLM)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from actors.model import TinyModelSpec, build_tiny_model
    from datagen.corpus import tokenizer_corpus

    spec = TinyModelSpec(hidden_size=a.hidden_size, num_layers=a.layers, seed=a.seed)
    print(build_tiny_model(a.out, tokenizer_corpus(), spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
