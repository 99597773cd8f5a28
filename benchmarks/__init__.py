"""Benchmarks: each one measures a claim against a peer run in the same session."""
