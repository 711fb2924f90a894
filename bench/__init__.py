"""Benchmarks of LLM Mesh against the engine it wraps."""
