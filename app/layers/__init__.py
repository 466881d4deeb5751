"""The layer vocabulary: every layer kind defined once (see registry.py). Torch-free at import."""
