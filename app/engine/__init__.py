"""The training engine: plain PyTorch, knows nothing of the web or the database.

Only `types` is torch-free; every other module here may import torch and is meant for
trainer processes (and tests), never for the web process.
"""
