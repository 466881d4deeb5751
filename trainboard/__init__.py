"""Trainboard's client: log a run from your own script (`run = trainboard.init(URL, ...)`)."""

from app.client import KerasCallback, Run, init

__all__ = ["KerasCallback", "Run", "init"]
