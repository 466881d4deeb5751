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


def test_the_trials_table_rounds_float_parameters_and_keeps_them_whole_in_a_title(client):
    answer = client.post("/api/sweeps", json={
        "dataset": "digits", "preset": "mnist-mlp", "config": {"epochs": 2}, "sampler": "random", "trials": 3,
        "space": {"config.optimizer.lr": {"type": "log_uniform", "low": 0.0001, "high": 0.1},
                  "config.optimizer.name": ["adam", "sgd"]}})
    assert answer.status_code == 201, answer.text
    sweep = answer.json()
    html = client.get(f"/sweeps/{sweep['id']}").text
    assert '<button type="button" class="link">optimizer</button>' in html  # config.optimizer.name, by what it names
    for trial in sweep["trials"]:
        lr = trial["params"]["config.optimizer.lr"]
        row = html[html.index(f'<tr data-trial="{trial["number"]}"'):]
        row = row[:row.index("</tr>")]
        assert f'data-p0="{lr}"' in row  # sorting goes by the whole value
        assert f'<td class="num" title="{lr}">{lr:.4g}</td>' in row, row
        assert f'<td>{trial["params"]["config.optimizer.name"]}</td>' in row  # words are not numbers


def test_the_parallel_coordinates_label_every_choice_over_the_lines():
    from app.web import sweep_charts

    space = {"config.optimizer.lr": {"type": "log_uniform", "low": 0.0001, "high": 0.1},
             "spec.dense_units": [8, 32, 128], "config.optimizer.name": ["adam", "sgd"]}
    params = [(0.0003, 8, "adam", 0.9), (0.01, 32, "sgd", 0.4), (0.05, 128, "adam", None)]
    view = {"space": space, "objective": {"metric": "val_loss", "direction": "minimize"},
            "trials": [{"number": i, "status": "completed" if v is not None else "pruned", "value": v,
                        "params": dict(zip(space, p, strict=True))} for i, (*p, v) in enumerate(params)]}
    view["best"] = {"number": 1, "value": 0.4}
    svg = str(sweep_charts.parallel_coordinates(view))
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
    assert ticks == ["0.0001", "0.00316", "0.1", "8", "32", "128", "adam", "sgd", "0.4", "0.65", "0.9"]
    assert re.findall(r'<text class="axis-label"[^>]*>([^<]+)<title>', svg) == [
        "lr", "dense_units", "optimizer", "val_loss"]
    # Names and ticks come after (so over) every line; the first axis's ticks sit left of it, in the margin.
    assert svg.rindex("<polyline") < svg.index('<text class="axis-label"')
    assert svg.count('text-anchor="end">') == 3
    assert svg.count('<polyline class="trial best"') == 1 and 'class="trial trial-pruned"' in svg

    chart = str(sweep_charts.objective_by_trial(view))
    assert re.findall(r'text-anchor="middle">(\d+)</text>', chart) == ["0", "1", "2"]  # every trial's place
    assert chart.count('class="point best"') == 1


def test_a_single_value_gets_a_scale_around_it_not_below_zero():
    """The first finished trial alone: its accuracy's axis is 0.189 … 0.231, not -0.29 … 0.71."""
    from app.web import sweep_charts

    view = {"space": {"config.optimizer.lr": [0.001, 0.01]}, "objective": {"metric": "val_accuracy", "direction": "maximize"},
            "trials": [{"number": 0, "status": "completed", "value": 0.21, "params": {"config.optimizer.lr": 0.001}},
                       {"number": 1, "status": "running", "value": None, "params": {"config.optimizer.lr": 0.01}}],
            "best": {"number": 0, "value": 0.21}}
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', str(sweep_charts.parallel_coordinates(view)))
    assert ticks[-3:] == ["0.189", "0.21", "0.231"], ticks
    chart = str(sweep_charts.objective_by_trial(view))
    assert re.findall(r'text-anchor="end">([^<]+)</text>', chart) == ["0.189", "0.21", "0.231"]
