"""Benchmarks of Secure Link: `python -m bench` (see docs/performance.md)."""
