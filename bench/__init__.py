"""Benchmarks (`make bench`): each module's `run()` returns its numbers; see docs/benchmarks.md."""
