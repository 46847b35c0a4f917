"""Benchmarks: each of the orchestrator's performance claims measured against its alternative in one run.

`python -m benchmarks --quick | --full`; see README.md, "Performance", and `benchmarks/run.py`.
"""
