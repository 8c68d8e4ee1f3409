"""Benchmarks of hayhooks-gunicorn against the ways Hayhooks is run without it; ``python -m benchmarks --help``."""
