"""Comparing runs side by side (see service.py)."""
