"""Measurements written against the public controller API."""
