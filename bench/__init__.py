"""Benchmarks: headshot against a reference doing the same work, in the same run, as a ratio."""
