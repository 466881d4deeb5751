"""Architectures: specs, their validation and summaries, Keras import, PyTorch export, presets."""
