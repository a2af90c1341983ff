"""STVQA data: Visual Genome scene graphs in, SpatialThinker training rows out.

Modules: :mod:`datagen.vg` (VG loader and image checks), :mod:`datagen.synthetic` (small VG-format scenes for tests
and the CPU default), :mod:`datagen.geometry` (box geometry and the depth / orientation / reach / location proxies),
:mod:`datagen.questions` (the nine question categories and the question-focused subgraph), :mod:`datagen.schema`
(the published STVQA-7K columns), :mod:`datagen.build` (balancing, splitting, safe writing) and
:mod:`datagen.stvqa` (loader, per-row task fields and the one-call builder), :mod:`datagen.stream` (the streamed
builder: Visual Genome at full scale in bounded memory, worker processes, resumable), :mod:`datagen.llm` (the LLM
question writer and the endpoint client). The pass@k VLM verifier is :mod:`cluster.verify`: it reads answers with
the evaluation's extraction and can run on the Ray rollout pool, both layers above this package.
"""
