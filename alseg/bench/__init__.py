"""Benchmarks that print measured figures (one JSON line per figure): ``alseg bench NAME``."""
