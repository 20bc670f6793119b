"""Benchmarks: functions that measure, used by scripts/benchmark.py (never timed in tests)."""
