"""One module per benchmark. Each owns its row mapper (raw dataset row -> :class:`evaluation.base.BenchmarkRow`),
its official aggregate and headline metric, and declares ``BENCHMARKS``: the :class:`evaluation.base.Benchmark`
entries it registers (CV-Bench and BLINK register a variant per subset). The registry is
:data:`evaluation.registry.MODULES`."""
