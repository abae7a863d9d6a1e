"""Benchmarking the text-embedding service against its limit and the alternatives (``tritonctl bench``)."""
