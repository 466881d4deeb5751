"""A run's per-layer weight, gradient and activation histograms over epochs (app/runs/histograms.py)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query

from app.api.errors import ERROR_RESPONSES
from app.core.deps import RunId
from app.runs import histograms as runs_histograms

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)


@router.get("/api/runs/{run_id}/histograms")
async def run_histograms(
    run_id: RunId,
    last: int = Query(runs_histograms.MAX_EPOCHS, ge=1, le=runs_histograms.MAX_EPOCHS,
                      description="only the latest this many epochs"),
) -> dict[str, Any]:
    """Per epoch (one `histograms` event each, as of the run's `last_seq`), per layer with trainable
    parameters: histograms (`lo`, `hi`, `counts` in equal bins, `nonfinite`) of its weights, of the
    gradients of the epoch's last training step and of its outputs on a fixed validation batch; its
    gradient norm (mean and maximum over sampled steps), the dead-ReLU fraction, and `flags`
    ("exploding", "vanishing"). `flagged` lists every layer's warnings over the run. Empty when the run
    recorded none (`config.histograms` off, or a model over 5M parameters with `auto`). Follow
    `/api/runs/{id}/events?after=<last_seq>` for the next epochs' `histograms` events."""
    return await anyio.to_thread.run_sync(lambda: runs_histograms.histograms(run_id, last=last))
