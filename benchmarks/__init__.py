"""Benchmarks of the framework, run from the repository root (`python -m benchmarks.bench`); not part of the
installed package."""
