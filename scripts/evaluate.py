#!/usr/bin/env python
"""Evaluate a policy on the SpatialThinker benchmarks, or score precomputed predictions.

Generate with the model (greedy by default) and score::

    python scripts/evaluate.py --model runs/x/final_model --benchmarks cv-bench-2d,blink-spatial \\
        --data-root /data/benchmarks --engine vllm --out results.json

Score precomputed outputs (jsonl lines ``{"id": ..., "output": ..., "benchmark": ...}``; ``benchmark`` optional
when the id names one loaded row) without loading a model::

    python scripts/evaluate.py --predictions preds.jsonl --benchmarks cv-bench-2d --data-root /data/benchmarks

An ``id`` is the project's row id or the dataset's own id as another harness writes it (CV-Bench ``idx``, MMVP
``Index``, BLINK/MM-Star ``index`` ...; each module in ``evaluation/benchmarks/`` names its id columns). Ids that
match no row are listed in the error (``--ignore-unmatched`` scores the others and lists them as a warning).

Data: ``--data-root DIR`` looks for each benchmark's copy in ``DIR/<name>`` (e.g. ``DIR/CV-Bench``, ``DIR/BLINK``);
``--source NAME=PATH`` gives one benchmark's file, directory or Hugging Face id; without either the benchmark's
hub id is loaded. ``--paper-scoring`` reproduces the public SpatialThinker evaluation script's scoring (including
its "A" fallback); the default is the standard letter extraction.

Settings (prompt template and image scaling, engine and lengths, reward, dtype) come from, in this order: ``--config``
(a training config); the run's ``config.json`` when ``--model`` is a run's ``final_model`` (so they match training);
else the paper's defaults (512*512 to 2048*2048 pixels, 2,048-token answers, 8,192-token context). The first output
line says which, and flags such as ``--max-pixels`` override single values.

Bad input exits with status 2 and one line ``error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ != "__mp_main__":
    # vLLM's engine-core and worker processes are spawned, and a spawned process re-runs this file as __mp_main__:
    # there it must not import the project, because numba (imported by rewards/) breaks vLLM's CPU worker start
    # (its Triton kernel scan reads ``vars()`` of every module global and fails on llvmlite's library wrapper).
    from cluster.config import ConfigError, TrainConfig, load_config
    from evaluation.base import BenchmarkError, BenchmarkRow
    from evaluation.predictions import PredictionError, match_predictions, read_predictions, unmatched_message
    from evaluation.registry import BENCHMARKS, iter_benchmark, resolve_name
    from evaluation.report import EvalReport, evaluate_rows, log_mlflow
    from evaluation.runner import run_policy
    from rewards.prompt import PromptError

log = logging.getLogger("evaluate")


class InputError(ValueError):
    """Bad command-line input; printed as one ``error:`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise InputError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="policy checkpoint directory (or hub id) to generate with")
    ap.add_argument("--benchmarks", help=f"comma-separated names: {', '.join(BENCHMARKS)}")
    ap.add_argument("--data-root", help="directory holding local copies, one sub-directory per benchmark")
    ap.add_argument(
        "--source", action="append", default=[], metavar="NAME=PATH", help="one benchmark's file, directory or hub id"
    )
    ap.add_argument("--predictions", help="jsonl of precomputed outputs (id, output[, benchmark]); no model is loaded")
    ap.add_argument("--missing-as-wrong", action="store_true", help="--predictions: score rows without one as wrong")
    ap.add_argument(
        "--ignore-unmatched",
        action="store_true",
        help="--predictions: warn about (instead of refusing) prediction ids that match no loaded row",
    )
    ap.add_argument(
        "--config",
        help="training config (YAML/JSON) whose prompt, rollout, reward and model.dtype to use (default: the run's "
        "config.json when --model is a run's final_model, else the paper's defaults)",
    )
    ap.add_argument("--engine", choices=("vllm", "hf"), help="generation engine (default: the config's, else vllm)")
    ap.add_argument("--dtype", help="auto | float32 | bfloat16 | float16 (default: the config's model.dtype)")
    ap.add_argument("--limit", type=int, help="at most N rows per benchmark")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy (default)")
    ap.add_argument("--max-new-tokens", type=int, help="response token limit (default: the rollout settings')")
    ap.add_argument("--max-model-len", type=int, help="prompt + response token limit of the engine")
    ap.add_argument("--min-pixels", type=int, help="images below this pixel count are scaled up (paper 512*512)")
    ap.add_argument("--max-pixels", type=int, help="images above this pixel count are scaled down (paper 2048*2048)")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per generate call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paper-scoring", action="store_true", help="score as the public SpatialThinker script does")
    ap.add_argument("--out", help="write the report JSON here (per-sample records to <out>.samples.jsonl)")
    ap.add_argument("--mlflow-uri", help="MLflow tracking URI; logs eval/<benchmark>/<metric>")
    ap.add_argument("--mlflow-run-id", help="log into this existing run (e.g. the training run)")
    ap.add_argument("--experiment", default="spatialthinker-eval", help="MLflow experiment for a new run")
    ap.add_argument("--run-name", help="MLflow run name for a new run")
    ap.add_argument("--step", type=int, default=0, help="MLflow step of the metrics (e.g. the training step)")
    ap.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {args.temperature}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.predictions and not args.model:
        raise InputError("give --model to generate, or --predictions to score precomputed outputs")
    if args.predictions and args.model:
        raise InputError("--predictions scores precomputed outputs; drop --model (or drop --predictions)")
    if args.data_root and not Path(args.data_root).is_dir():
        raise InputError(f"--data-root {args.data_root} is not a directory")
    return args


def parse_sources(items: list[str]) -> dict[str, str]:
    sources = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--source expects NAME=PATH, got {item!r}")
        sources[resolve_name(name)] = path.strip()
    return sources


def parse_benchmarks(text: str | None) -> list[str]:
    names = [resolve_name(n) for n in (text or "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def score_predictions(args, benchmarks: list[str], sources: dict[str, str]) -> EvalReport:
    """--predictions mode: load the benchmarks' rows and score the given outputs against them."""
    preds = read_predictions(args.predictions)
    if not benchmarks:
        named = {p.benchmark for p in preds}
        if None in named:
            raise InputError("predictions without a 'benchmark' field need --benchmarks")
        benchmarks = sorted(named)
    unknown = sorted({p.benchmark for p in preds if p.benchmark and p.benchmark not in benchmarks})
    if unknown:
        raise InputError(f"predictions name benchmark(s) {', '.join(unknown)} not in --benchmarks")
    rows: dict[tuple[str, str], BenchmarkRow] = {}
    for name in benchmarks:
        for row in iter_benchmark(name, sources.get(name), data_root=args.data_root, limit=args.limit):
            rows[row.key] = row
    matched = match_predictions(preds, rows.values(), where=str(args.predictions))
    outputs = matched.outputs
    if matched.unmatched:
        message = unmatched_message(matched.unmatched, len(preds), rows.values(), where=str(args.predictions))
        if not args.ignore_unmatched:
            raise InputError(f"{message} (--ignore-unmatched scores the others)")
        log.warning("%s", message)
    if matched.by_native_id:
        log.info("%d of %d predictions matched by the dataset's own id", matched.by_native_id, len(preds))
    missing = [k for k in rows if k not in outputs]
    if missing:
        verb = "scored as wrong" if args.missing_as_wrong else "left out"
        log.warning("%d of %d rows have no prediction (%s), e.g. %s/%s", len(missing), len(rows), verb, *missing[0])
    keep = list(rows) if args.missing_as_wrong else [k for k in rows if k in outputs]
    info = {
        "predictions": str(args.predictions),
        "rows_without_prediction": len(missing),
        "missing_as_wrong": bool(args.missing_as_wrong),
        "matched_by_dataset_id": matched.by_native_id,
        "unmatched_ids": [p.id for p in matched.unmatched],
        "limit": args.limit,
    }
    return evaluate_rows(
        [rows[k] for k in keep], [outputs.get(k, "") for k in keep], paper_scoring=args.paper_scoring, info=info
    )


def run_config_of(model: str) -> Path | None:
    """The training run's ``config.json`` when ``model`` is a run's ``final_model`` folder (the trainer writes
    ``<output_dir>/config.json`` beside ``<output_dir>/final_model``), else None."""
    path = Path(model).expanduser()
    if path.name != "final_model" or not path.is_dir():
        return None
    config = path.parent / "config.json"
    return config if config.is_file() else None


def settings_for(args) -> tuple[TrainConfig, str]:
    """The training config whose prompt, rollout, reward and dtype the evaluation uses, and where it came from:
    ``--config``, the run's ``config.json`` (``--model`` is a run's ``final_model``), or the paper's defaults."""
    if args.config:
        return load_config(args.config), f"--config {args.config}"
    run_config = run_config_of(args.model)
    if run_config is not None:
        # the run may have been resumed from a checkpoint path that is gone by now; evaluation does not resume
        return load_config(str(run_config), ["resume=auto"]), f"the run's config {run_config}"
    return TrainConfig(), "the paper's defaults (no --config, and --model is not a run's final_model)"


def generate_and_score(args, benchmarks: list[str], sources: dict[str, str]) -> EvalReport:
    """Model mode: settings from :func:`settings_for` and flags, then :func:`evaluation.runner.run_policy`."""
    if not benchmarks:
        raise InputError("--benchmarks is required")
    cfg, origin = settings_for(args)
    rollout, prompt, reward, dtype = cfg.rollout, cfg.prompt, cfg.reward, cfg.model.dtype
    changes = {
        "engine": args.engine,
        "max_new_tokens": args.max_new_tokens,
        "max_model_len": args.max_model_len,
    }
    rollout = dataclasses.replace(rollout, **{k: v for k, v in changes.items() if v is not None})
    pixels = {"min_pixels": args.min_pixels, "max_pixels": args.max_pixels}
    prompt = dataclasses.replace(prompt, **{k: v for k, v in pixels.items() if v is not None})
    print(
        f"settings: {origin}: prompt {prompt.template_file or prompt.template}, pixels {prompt.min_pixels}-"
        f"{prompt.max_pixels}, engine {rollout.engine}, max_new_tokens {rollout.max_new_tokens}, max_model_len "
        f"{rollout.max_model_len}, dtype {args.dtype or dtype}, reward {reward.preset}",
        flush=True,
    )
    report = run_policy(
        args.model,
        benchmarks,
        rollout,
        prompt_settings=prompt,
        dtype=args.dtype or dtype,
        seed=args.seed,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        paper_scoring=args.paper_scoring,
        sources=sources,
        data_root=args.data_root,
        limit=args.limit,
        batch_size=args.batch_size,
        reward_cfg=reward,
    )
    report.info["settings"] = origin
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        sources = parse_sources(args.source)
        benchmarks = parse_benchmarks(args.benchmarks)
        for name in sources:
            if benchmarks and name not in benchmarks:
                raise InputError(f"--source names {name}, which is not in --benchmarks")
        if args.predictions:
            report = score_predictions(args, benchmarks, sources)
        else:
            report = generate_and_score(args, benchmarks, sources)
    except (InputError, PredictionError, BenchmarkError, ConfigError, PromptError, FileNotFoundError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(report.table())
    if args.out:
        path = report.write(args.out)
        log.info("wrote %s and %s", path, path.with_suffix(".samples.jsonl"))
    if args.mlflow_uri or args.mlflow_run_id:
        run_id = log_mlflow(
            report,
            args.mlflow_uri,
            run_id=args.mlflow_run_id,
            experiment=args.experiment,
            run_name=args.run_name,
            step=args.step,
        )
        log.info("logged %d metrics to MLflow run %s", len(report.metrics()), run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
