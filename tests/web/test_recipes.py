"""The launch form's recipes (app/architectures/recipes.py, templates/runs/_recipes.html): a button fills the
form's fields through POST /runs/recipe (htmx), the filled form queues a run with those settings, and the
times shown are the stored measurement's (recipe_figures.json), whatever it says."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from app.architectures import recipes
from tests.conftest import LOCAL

HTMX = {"HX-Request": "true"}


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A measurement file with figures no template could have guessed."""
    path = tmp_path / "recipe_figures.json"
    path.write_text(json.dumps({
        "measured": "2031-01-02 03:04 UTC", "machine_short": "7-core CPU", "threads": 3, "target": 0.974,
        "recipes": {
            "fast": {"seconds_to_target": 12.34, "reached": 3, "seeds": 3, "final_accuracy": 0.9771},
            "tutorial": {"seconds_to_target": None, "reached": 1, "seeds": 3, "final_accuracy": 0.9731}}}))
    monkeypatch.setattr(recipes, "FIGURES_PATH", path)
    return path


def inputs(html: str) -> dict[str, str]:
    """The form's values as a browser would post them: text inputs and each select's chosen option."""
    values = {name: unescape(value) for name, value in
              re.findall(r'<input type="text" id="[^"]*" name="([^"]+)" value="([^"]*)"', html)}
    for name, body in re.findall(r'<select id="[^"]*" name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*\sselected', body)
        values[name] = unescape(chosen.group(1)) if chosen else ""
    return values


def recipe_time(html: str, name: str) -> str:
    match = re.search(rf'data-recipe-time="{name}">(.*?)</span>', html, re.S)
    assert match, f"no time for the {name} recipe"
    return " ".join(re.sub(r"<[^>]+>", "", unescape(match.group(1))).split())


def test_the_form_offers_the_recipes_with_the_stored_times(client, stored):
    page = client.get("/runs/new").text
    for name in ("tutorial", "fast"):
        assert re.search(rf'hx-post="/runs/recipe" hx-vals=\'{{"recipe": "{name}"}}\'', page)
    fast = recipe_time(page, "fast")
    assert "12.3 s" in fast and "7-core CPU" in fast and "3 torch threads" in fast and "2031-01-02" in fast
    assert "Did not reach 0.974" in recipe_time(page, "tutorial") and "2 of 3 seeds" in recipe_time(page, "tutorial")
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "measured": "2032-05-06 07:08 UTC"}))
    assert "2032-05-06" in recipe_time(client.get("/runs/new").text, "fast")  # read, not remembered


def test_without_a_measurement_the_form_says_so(client, tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "FIGURES_PATH", tmp_path / "missing.json")
    page = client.get("/runs/new").text
    assert "not measured yet" in recipe_time(page, "fast") and " s " not in recipe_time(page, "fast")


def test_choosing_the_fast_recipe_fills_the_fields_and_the_run_has_them(client, stored):
    typed = {"name": "fast try", "model": "preset:mnist-mlp-dropout", "dataset": "digits", "config.epochs": "9",
             "config.batch_size": "32", "config.optimizer.name": "sgd", "config.optimizer.lr": "0.1",
             "config.schedule.name": "cosine", "config.schedule.t_max": "4", "config.seed": "7"}
    form = client.post("/runs/recipe", data={**typed, "recipe": "fast"}, headers=HTMX)
    assert form.status_code == 200 and form.text.lstrip().startswith("<form")  # the form alone, for htmx
    values = inputs(form.text)
    fast = recipes.form_fields(recipes.RECIPES["fast"])
    assert {key: values[key] for key in fast} == fast
    assert values["config.batch_size"] == "256" and values["config.schedule.name"] == "warmup_cosine"
    assert values["config.schedule.t_max"] == ""  # another schedule's setting is cleared
    # what the recipe does not set stays as typed; the model is one the recipe is for, so it stays too
    assert values["name"] == "fast try" and values["config.seed"] == "7"
    assert values["model"] == "preset:mnist-mlp-dropout" and values["dataset"] == "digits"
    assert "settings are filled in" in form.text

    queued = client.post("/runs", data=values, headers=HTMX)
    assert queued.status_code == 200, queued.text
    run = client.get(queued.headers["HX-Redirect"].replace("/runs/", "/api/runs/")).json()
    assert run["config"]["batch_size"] == 256 and run["config"]["epochs"] == 3
    assert run["config"]["optimizer"]["lr"] == 0.008 and run["config"]["val_split"] == 0
    assert run["config"]["schedule"] == {"name": "warmup_cosine", "warmup_steps": 100}


def test_the_tutorial_recipe_undoes_the_fast_one_and_another_model_becomes_the_mlp(client, stored):
    fast = inputs(client.post("/runs/recipe", data={"model": "quick:digits-mlp", "dataset": "digits",
                                                     "recipe": "fast"}, headers=HTMX).text)
    assert fast["model"] == "preset:mnist-mlp" and fast["dataset"] == ""
    tutorial = inputs(client.post("/runs/recipe", data={**fast, "recipe": "tutorial"}, headers=HTMX).text)
    assert tutorial["config.batch_size"] == "32" and tutorial["config.optimizer.lr"] == "0.001"
    assert tutorial["config.epochs"] == "5" and tutorial["config.schedule.name"] == ""
    assert tutorial["config.schedule.warmup_steps"] == ""


def test_an_unknown_recipe_is_a_422_that_says_what_to_choose(client, stored):
    response = client.post("/runs/recipe", data={"recipe": "turbo" * 50}, headers=HTMX)
    assert response.status_code == 422
    assert "no recipe named" in unescape(response.text) and "tutorial, fast" in response.text


def test_the_committed_measurement_is_what_the_form_shows(client):
    stored = recipes.figures()
    assert stored is not None, "app/architectures/recipe_figures.json is missing or unreadable"
    page = client.get("/runs/new").text
    for name in recipes.RECIPES:
        measured = stored["recipes"][name]
        assert measured["seeds"] >= 2 and measured["reached"] == measured["seeds"]
        shown = recipe_time(page, name)
        assert f"{measured['seconds_to_target']:.1f} s" in shown and stored["measured"] in shown, shown
    assert stored["recipes"]["fast"]["seconds_to_target"] < stored["recipes"]["tutorial"]["seconds_to_target"]
