"""Side-by-side measurements of dmf, not tests: ``python -m benchmarks --help``.

See benchmarks/README.md for how to run them and what the columns mean;
:mod:`benchmarks.harness` is the part a new benchmark reuses.
"""
