"""Benchmark scripts (``python benchmarks/NAME.py ...``), importable as ``benchmarks.NAME`` for
their tests. Each writes a JSON under docs/results/ with the command that produced it."""
