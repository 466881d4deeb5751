"""Sweep pages in process (no executor): every form that changes something posts through htmx (the only
way a signed-in browser sends its CSRF token), and the new-sweep form answers htmx with itself again,
each problem beside its field, or with a redirect to the sweep's page."""

from __future__ import annotations

import json
import re

HTMX = {"HX-Request": "true"}
FORM = {"model": "preset:mnist-mlp", "dataset": "digits", "config.epochs": "2", "config.batch_size": "32",
        "space": json.dumps({"config.optimizer.lr": [0.001, 0.01]}), "sampler": "grid", "pruner": "none",
        "objective.metric": "val_accuracy"}


def _post_forms(html: str) -> list[str]:
    return re.findall(r"<form\b[^>]*\bmethod=\"post\"[^>]*>", html)


def test_every_post_form_on_the_sweep_pages_goes_through_htmx(client):
    answer = client.post("/api/sweeps", json={"dataset": "digits", "preset": "mnist-mlp", "config": {"epochs": 2},
                                             "space": {"config.optimizer.lr": [0.001, 0.01]}, "sampler": "grid"})
    assert answer.status_code == 201, answer.text
    sweep_id = answer.json()["id"]
    for path in ("/sweeps", "/sweeps/new", f"/sweeps/{sweep_id}"):
        page = client.get(path)
        assert page.status_code == 200, path
        forms = _post_forms(page.text)
        assert forms, path
        for form in forms:
            action = re.search(r'\baction="([^"]+)"', form).group(1)
            assert f'hx-post="{action}"' in form, (path, form)


def test_the_form_answers_htmx_with_itself_and_its_errors_then_redirects(client):
    wrong = client.post("/sweeps", data={**FORM, "space": "{lr: [1, 2]"}, headers=HTMX)
    assert wrong.status_code == 422
    assert wrong.text.lstrip().startswith('<form id="sweep-form"') and "<html" not in wrong.text
    assert re.search(r'id="space-errors" class="messages"><p class="error" role="alert">write the space as a JSON',
                     wrong.text)
    assert 'aria-invalid="true" aria-describedby="space-errors"' in wrong.text
    assert "{lr: [1, 2]" in wrong.text  # what was typed stays
    assert client.get("/api/sweeps").json()["total"] == 0

    right = client.post("/sweeps", data=FORM, headers=HTMX)
    assert right.status_code == 200, right.text
    sweep_id = client.get("/api/sweeps").json()["items"][0]["id"]
    assert right.headers["HX-Redirect"] == f"/sweeps/{sweep_id}"

    # Without htmx (no session, no CSRF to send): the whole page, or a redirect.
    plain = client.post("/sweeps", data={**FORM, "config.epochs": "many"}, follow_redirects=False)
    assert plain.status_code == 422 and "<html" in plain.text and 'id="config-epochs-errors"' in plain.text
    plain = client.post("/sweeps", data=FORM, follow_redirects=False)
    assert plain.status_code == 303 and re.fullmatch(r"/sweeps/\d+", plain.headers["location"])
