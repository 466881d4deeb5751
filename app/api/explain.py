"""Explanations of a trained run's test predictions: attribution maps (integrated gradients, saliency,
Grad-CAM) for the predicted and the true class, the first conv layer's filters, each conv layer's feature
maps; as JSON, or as PNG pictures (the run page shows those). Computed in the predictor process."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.api.errors import ERROR_RESPONSES
from app.core.deps import RunId, SessionDep
from app.runs import explain

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)

# Bounded before anything is read: the service then checks the index against the test split's length.
IndexQuery = Annotated[int, Query(ge=0, le=10_000_000, description="a sample's index in the test split")]
LayerQuery = Annotated[int, Query(ge=0, le=10_000, description="a Conv2D layer's index in the spec")]
MethodQuery = Annotated[str, Query(max_length=20, description="ig (integrated gradients), saliency or gradcam")]
TargetQuery = Annotated[str, Query(max_length=10, description="pred (the predicted class) or true")]
_PNG = {"Cache-Control": "private, max-age=300"}


@router.get("/api/runs/{run_id}/attributions")
def attributions(db_session: SessionDep, run_id: RunId, index: IndexQuery, method: MethodQuery = "ig",
                 target: TargetQuery | None = None) -> dict[str, Any]:
    """The attribution maps (H×W, in [0, 1]) of test sample `index` for its predicted and its true class, or
    for `target` only."""
    result = explain.public(explain.attributions(db_session=db_session, run_id=run_id, index=index, method=method))
    if target is not None:
        explain.check_target(target)
        result["maps"] = {target: result["maps"][target]}
    return result


@router.get("/api/runs/{run_id}/attributions.png")
def attribution_png(db_session: SessionDep, run_id: RunId, index: IndexQuery, method: MethodQuery = "ig",
                    target: TargetQuery = "pred") -> Response:
    """The map of `target` blended over the test image."""
    png = explain.attribution_png(db_session=db_session, run_id=run_id, index=index, method=method, target=target)
    return Response(png, media_type="image/png", headers=_PNG)


@router.get("/api/runs/{run_id}/filters")
def filters(db_session: SessionDep, run_id: RunId) -> dict[str, Any]:
    """The first Conv2D layer's filters (up to 64), each scaled to [0, 1] (RGB when it reads colour)."""
    return explain.filters(db_session=db_session, run_id=run_id)


@router.get("/api/runs/{run_id}/filters.png")
def filters_png(db_session: SessionDep, run_id: RunId) -> Response:
    return Response(explain.filters_png(db_session=db_session, run_id=run_id), media_type="image/png", headers=_PNG)


@router.get("/api/runs/{run_id}/feature-maps")
def feature_maps(db_session: SessionDep, run_id: RunId, index: IndexQuery) -> dict[str, Any]:
    """Each Conv2D layer's activations (16 channels a layer, 8 layers at most) for test sample `index`."""
    return explain.feature_maps(db_session=db_session, run_id=run_id, index=index)


@router.get("/api/runs/{run_id}/feature-maps.png")
def feature_maps_png(db_session: SessionDep, run_id: RunId, index: IndexQuery, layer: LayerQuery) -> Response:
    """One Conv2D layer's feature maps for test sample `index`, as a grid."""
    png = explain.feature_maps_png(db_session=db_session, run_id=run_id, index=index, layer=layer)
    return Response(png, media_type="image/png", headers=_PNG)
