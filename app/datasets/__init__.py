"""Data sets: built-ins, imports of local files and user uploads, cached as .npy files.

Nothing in this package imports torch or torchvision at import time: the web process lists
and previews data sets without paying for torch. Only the download path (trainer processes)
imports torchvision, lazily.
"""
