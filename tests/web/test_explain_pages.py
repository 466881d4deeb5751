"""The Explain panel and the Filters panel as HTML: what they show for an MLP and a CNN, and the message
(swapped in by htmx) for a bad index."""

from __future__ import annotations

import re

import pytest

from app.runs import explain
from app.runs import predict as predict_service
from tests.api.test_explain import CNN, _run_with_weights
from tests.runs.helpers import DIGITS_MLP


@pytest.fixture
def predictor():
    yield predict_service._predictor
    predict_service._predictor.close()
    explain.clear_cache()


def test_mlp_panel_has_both_overlays_and_no_gradcam(client, predictor):
    run_id = _run_with_weights(client, DIGITS_MLP)
    page = client.get(f"/runs/{run_id}/explain", params={"index": 4}, headers={"HX-Request": "true"})
    assert page.status_code == 200, page.text
    html = page.text
    assert f'src="/api/runs/{run_id}/attributions.png?index=4&amp;method=ig&amp;target=pred"' in html
    assert f'src="/api/runs/{run_id}/attributions.png?index=4&amp;method=ig&amp;target=true"' in html
    assert 'id="explain-method-ig" checked' in html and "explain-gradcam" not in html
    assert re.search(r'id="explain-true-name">\d<', html) and re.search(r'id="explain-pred-name">\d<', html)
    saliency = client.get(f"/runs/{run_id}/explain", params={"index": 4, "method": "saliency"}).text
    assert "method=saliency&amp;target=pred" in saliency and 'id="explain-method-saliency" checked' in saliency
    # The results section of an MLP has no Filters panel.
    assert 'id="filters-panel"' not in client.get(f"/runs/{run_id}/results").text


def test_cnn_panel_has_gradcam_and_feature_maps_and_the_results_show_filters(client, predictor):
    run_id = _run_with_weights(client, CNN)
    html = client.get(f"/runs/{run_id}/explain", params={"index": 4}).text
    assert f'src="/api/runs/{run_id}/attributions.png?index=4&amp;method=gradcam&amp;target=true"' in html
    assert "layer 1, the last Conv2D" in html
    assert f'src="/api/runs/{run_id}/feature-maps.png?index=4&amp;layer=0"' in html
    assert f'src="/api/runs/{run_id}/feature-maps.png?index=4&amp;layer=1"' in html
    results = client.get(f"/runs/{run_id}/results").text
    assert 'id="filters-panel"' in results and f'src="/api/runs/{run_id}/filters.png"' in results
    assert "layer 0, the first Conv2D: 5 filters" in results


def test_a_bad_index_is_said_in_the_panel(client, predictor):
    run_id = _run_with_weights(client, DIGITS_MLP)
    page = client.get(f"/runs/{run_id}/explain", params={"index": 400})
    assert page.status_code == 422
    assert "index 400 is out of range: the test split of digits has 360 samples" in page.text
    unknown = client.get(f"/runs/{run_id}/explain", params={"index": 1, "method": "lime"})
    assert unknown.status_code == 422 and "method must be one of" in unknown.text
    queued = _run_with_weights(client, DIGITS_MLP, weights=False)
    page = client.get(f"/runs/{queued}/explain", params={"index": 1})
    assert page.status_code == 200 and "no trained weights yet" in page.text
