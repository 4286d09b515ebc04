"""Performance harness of the engine: `python -m benchmarks.run` (see benchmarks/README.md)."""
