"""Benchmark evaluation of a policy, beside the trainer's packages (scripts -> cluster -> actors / evaluation ->
datagen / rewards).

* :mod:`evaluation.base`: the normalised :class:`~evaluation.base.BenchmarkRow`, the registry entry
  :class:`~evaluation.base.Benchmark`, the field and image helpers the row mappers share and the counting helpers
  of the official aggregates;
* :mod:`evaluation.loading`: raw rows from a Hugging Face id or a local copy (parquet, arrow, jsonl, json, csv,
  VLMEvalKit TSV, ``save_to_disk`` folders);
* :mod:`evaluation.answers`: answer extraction, standard (VLMEvalKit-like) and paper-faithful;
* :mod:`evaluation.benchmarks`: one module per benchmark (its mapper, official aggregate, headline metric and id
  columns), listed in :data:`evaluation.registry.MODULES`;
* :mod:`evaluation.registry`: names, aliases, sources and row loading;
* :mod:`evaluation.report`: scoring, per-benchmark aggregates and the report (table, JSON, MLflow);
* :mod:`evaluation.runner`: prompts from the training prompt builder and generation with a rollout engine;
* :mod:`evaluation.predictions`: matching outputs written elsewhere (project or dataset ids) to rows.

``scripts/evaluate.py`` is the command line; the trainer's validation (``cluster/trainer.py``) scores
``eval.benchmarks`` with the same code. Adding a benchmark: one file in ``evaluation/benchmarks/`` and one line in
:data:`evaluation.registry.MODULES`.
"""
