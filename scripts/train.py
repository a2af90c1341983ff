#!/usr/bin/env python
"""Train a SpatialThinker policy with GRPO on Ray.

The CPU demo, ``cluster/configs/cpu_demo.yaml`` (tiny Qwen2.5-VL model built here, synthetic VG scenes, local Ray,
vLLM CPU rollouts, DeepSpeed ZeRO-3 on gloo, MLflow file store under the output dir)::

    python scripts/train.py

On a cluster (output_dir must be an absolute path every node can read)::

    ray job submit --working-dir . -- python scripts/train.py --config cluster/configs/spatialthinker_3b.yaml

Settings come from ``--config`` (YAML/JSON; without it the CPU demo's file) over the paper's defaults, and
``--set key.sub=value``; ``--print-config`` shows the result.

The terminal shows the project's lines (one per step, validation, checkpoints) and real warnings and errors; other
libraries' output (Ray, vLLM, DeepSpeed, transformers, progress bars) goes to ``<output_dir>/train.log`` with a copy
of the terminal's lines (``--verbose`` shows it all on the terminal instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cluster.config import DEMO_CONFIG, ConfigError, load_config, resolve_output_dir  # noqa: E402

log = logging.getLogger("spatialthinker")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=f"YAML or JSON config file (default: the CPU demo, {DEMO_CONFIG.name})")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    ap.add_argument("--steps", type=int, help="shorthand for --set steps=N")
    ap.add_argument("--output-dir", help="shorthand for --set output_dir=PATH")
    ap.add_argument("--resume", help="auto | never | path to a checkpoint (checkpoints/step_N)")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    ap.add_argument(
        "--verbose", action="store_true", help="show other libraries' output on the terminal too (else: train.log)"
    )
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides = list(args.overrides)
    for flag, key in ((args.steps, "steps"), (args.output_dir, "output_dir"), (args.resume, "resume")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    try:
        cfg = load_config(args.config or str(DEMO_CONFIG), overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    terminal = sys.stderr
    if not args.verbose:
        try:
            log_path = resolve_output_dir(cfg.output_dir) / "train.log"
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        from cluster.console import quiet_console

        try:
            terminal = quiet_console(log_path)
        except OSError as e:  # the trainer's own check would say the same, later
            print(f"error: output_dir {log_path.parent} is not writable: {e.strerror}", file=sys.stderr)
            return 2
        print(f"other libraries' output goes to {log_path} (--verbose shows it here)", file=terminal)

    # imported after the config is known good (cluster.config has loaded torch and Numba already): these pull in Ray,
    # transformers, the actor code and datagen, seconds that --print-config and a bad config do not pay
    from actors.learner import LearnerRankDied
    from cluster.checkpoints import CheckpointError
    from cluster.pool import NoRolloutWorkers
    from cluster.tracking import TrackingError
    from cluster.trainer import ResumeError, main_train
    from datagen.stvqa import DatasetError
    from datagen.vg import VGFormatError
    from rewards.prompt import PromptError

    expected = (
        ConfigError,
        ResumeError,
        CheckpointError,
        DatasetError,
        VGFormatError,
        PromptError,
        TrackingError,
        NoRolloutWorkers,
        LearnerRankDied,
        FileNotFoundError,
        FileExistsError,
    )
    try:
        main_train(cfg)
    except expected as e:
        print(f"error: {str(e).splitlines()[0]}", file=terminal)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=terminal)
        return 130
    except Exception:  # a bug or an unexpected failure: the traceback on the terminal (logged, so the file has it too)
        log.exception("training failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
