"""Triton model repository: typed config generation and the on-disk writer."""
