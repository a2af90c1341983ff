#!/usr/bin/env python
"""Train a SpatialThinker policy with GRPO on Ray.

Local CPU default (tiny Qwen2.5-VL model built here, synthetic VG scenes,
local Ray, MLflow file store under the output dir)::

    python scripts/train.py

On a cluster::

    ray job submit --working-dir . -- python scripts/train.py --config configs/gpu.yaml

Settings come from ``--config`` (YAML/JSON) and ``--set key.sub=value``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML or JSON config file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    ap.add_argument("--steps", type=int, help="shorthand for --set steps=N")
    ap.add_argument("--output-dir", help="shorthand for --set output_dir=PATH")
    ap.add_argument("--resume", help="auto | never | path to a checkpoint (checkpoints/step_N)")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = ap.parse_args(argv)

    from cluster.config import ConfigError, load_config

    ov = list(args.overrides)
    if args.steps is not None:
        ov.append(f"steps={args.steps}")
    if args.output_dir:
        ov.append(f"output_dir={args.output_dir}")
    if args.resume:
        ov.append(f"resume={args.resume}")
    try:
        cfg = load_config(args.config, ov)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0

    from cluster.trainer import ResumeError, main_train
    from datagen.vg import VGFormatError

    try:
        main_train(cfg)
    except (ResumeError, VGFormatError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
