"""The "Explain" panel of a misclassified test image (opened from the confusion-matrix gallery): the image,
its predicted and true class, attribution overlays for both (integrated gradients or saliency), and for
convolutional models Grad-CAM and each conv layer's feature maps. The pictures are <img>s of the PNG
endpoints in app/api/explain.py; this route asks the predictor once (the overlays' answer, then cached)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.core.deps import RunId, SessionDep
from app.core.errors import DomainError
from app.runs import explain
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

IndexQuery = Annotated[int, Query(ge=0, le=10_000_000, description="a sample's index in the test split")]
SWITCHABLE = ("ig", "saliency")  # the main row's methods; Grad-CAM has its own row for conv models


@router.get("/runs/{run_id}/explain", response_class=HTMLResponse)
def explain_panel(request: Request, db_session: SessionDep, run_id: RunId, index: IndexQuery,
                  method: Annotated[str, Query(max_length=20)] = "ig") -> HTMLResponse:
    """The panel for test sample `index`; a problem (no weights, a bad index) is said inside it."""
    try:
        if method not in SWITCHABLE:
            explain.check_method(method)  # the API's message for an unknown one
            method = "ig"
        result = explain.attributions(db_session=db_session, run_id=run_id, index=index, method=method)
    except DomainError as exc:
        db_session.rollback()
        # htmx swaps 422s (base.html's responseHandling): the message replaces the panel.
        return render(request, "runs/_explain.html", {"error": exc.message, "run_id": run_id, "index": index},
                      status_code=422 if exc.status_code == 422 else 200)
    found = result["_subject"]
    layers = [{"layer": i, "filters": found.spec["layers"][i].get("filters"), "type": found.spec["layers"][i]["type"]}
              for i in found.conv[:explain.MAX_LAYERS]]
    return render(request, "runs/_explain.html", {
        "error": None, "run_id": run_id, "index": index, "dataset": found.dataset, "result": result,
        "methods": [(key, explain.METHODS[key]) for key in SWITCHABLE], "conv_layers": layers,
        "gradcam_layer": found.conv[-1] if found.conv else None, "max_channels": explain.MAX_CHANNELS})
