"""Run settings have one schema: the launch form, the JSON API, the CLI and the engine agree on it.

The form is filled in as a browser submits it (every input of the page with its shown value, the
hidden '0' before each checkbox), then the case's fields are changed.
"""

from __future__ import annotations

import re
from dataclasses import fields
from html.parser import HTMLParser

import pytest

from tests.conftest import LOCAL
from tests.runs.helpers import DIGITS_MLP
from tests.web.test_run_pages import slot


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


class _FormReader(HTMLParser):
    """The (name, value) pairs a browser posts for the page's launch form, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[str, str]] = []
        self._select: str | None = None
        self._first: str | None = None
        self._chosen = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "input" and a.get("type") == "checkbox":
            if "checked" in a:
                self.pairs.append((a["name"], a["value"]))
        elif tag == "input" and "name" in a:
            self.pairs.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._first, self._chosen = a["name"], None, False
        elif tag == "option" and self._select is not None:
            if self._first is None:
                self._first = a.get("value", "")
            if "selected" in a:
                self.pairs.append((self._select, a.get("value", "")))
                self._chosen = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            if not self._chosen:
                self.pairs.append((self._select, self._first or ""))
            self._select = None


def browser_form(client, **changes: str) -> dict[str, list[str]]:
    """The launch form as a browser posts it, with the quick-start MLP on digits and `changes` typed in
    (a checkbox named in `changes` with "1" is ticked: its hidden '0' still goes first)."""
    reader = _FormReader()
    reader.feed(client.get("/runs/new").text)
    typed = {"model": "quick:digits-mlp", "dataset": "digits", **changes}
    posted: dict[str, list[str]] = {}
    for name, value in [*((n, v) for n, v in reader.pairs if n not in typed or v == "0"), *typed.items()]:
        posted.setdefault(name, []).append(value)
    return posted


# (what the API client sends in `config`, the form fields a person types, the field the error is about,
#  the input whose slot shows it). Taken from TrainConfigIn's constraints.
BAD_SETTINGS = [
    ({"epochs": 0}, {"config.epochs": "0"}, "config.epochs", None),
    ({"epochs": 100000}, {"config.epochs": "100000"}, "config.epochs", None),
    ({"epochs": "many"}, {"config.epochs": "many"}, "config.epochs", None),
    ({"batch_size": 0}, {"config.batch_size": "0"}, "config.batch_size", None),
    ({"batch_size": 2.5}, {"config.batch_size": "2.5"}, "config.batch_size", None),
    ({"optimizer": {"name": "adam", "lr": -1}}, {"config.optimizer.lr": "-1"}, "config.optimizer.lr", None),
    ({"optimizer": {"name": "adam", "lr": 0}}, {"config.optimizer.lr": "0"}, "config.optimizer.lr", None),
    ({"optimizer": {"name": "adam", "lr": "abc"}}, {"config.optimizer.lr": "abc"}, "config.optimizer.lr", None),
    ({"optimizer": {"name": "adam", "lr": "1e999"}}, {"config.optimizer.lr": "1e999"}, "config.optimizer.lr", None),
    ({"seed": -1}, {"config.seed": "-1"}, "config.seed", None),
    ({"seed": 2**32}, {"config.seed": str(2**32)}, "config.seed", None),
    ({"device": "cuda:99999"}, {"config.device": "cuda:99999"}, "config.device", None),
    ({"device": "tpu"}, {"config.device": "tpu"}, "config.device", None),
    ({"optimizer": {"name": "adagrad"}}, {"config.optimizer.name": "adagrad"}, "config.optimizer.name", None),
    ({"optimizer": {"name": "sgd", "momentum": 2}},
     {"config.optimizer.name": "sgd", "config.optimizer.momentum": "2"}, "config.optimizer.momentum", None),
    ({"optimizer": {"name": "sgd", "nesterov": True}},
     {"config.optimizer.name": "sgd", "config.optimizer.nesterov": "1"}, "config.optimizer", "config.optimizer.name"),
    ({"optimizer": {"name": "rmsprop", "alpha": 1}},
     {"config.optimizer.name": "rmsprop", "config.optimizer.alpha": "1"}, "config.optimizer.alpha", None),
    ({"optimizer": {"name": "adam", "betas": [0.9, 1.5]}},
     {"config.optimizer.betas.0": "0.9", "config.optimizer.betas.1": "1.5"}, "config.optimizer.betas.1", None),
    ({"optimizer": {"name": "adam", "weight_decay": -0.1}},
     {"config.optimizer.weight_decay": "-0.1"}, "config.optimizer.weight_decay", None),
    ({"loss": "hinge"}, {"config.loss": "hinge"}, "config.loss", None),
    ({"l2": -1}, {"config.l2": "-1"}, "config.l2", None),
    ({"grad_clip": 0}, {"config.grad_clip": "0"}, "config.grad_clip", None),
    ({"val_split": 1.5}, {"config.val_split": "1.5"}, "config.val_split", None),
    ({"val_split": 0.9}, {"config.val_split": "0.9"}, "config.val_split", None),
    ({"normalize": "minmax"}, {"config.normalize": "minmax"}, "config.normalize", None),
    ({"top_k": 0}, {"config.top_k": "0"}, "config.top_k", None),
    ({"top_k": 21}, {"config.top_k": "21"}, "config.top_k", None),
    ({"max_train_samples": 0}, {"config.max_train_samples": "0"}, "config.max_train_samples", None),
    ({"keep_checkpoints": -1}, {"config.keep_checkpoints": "-1"}, "config.keep_checkpoints", None),
    ({"schedule": {"name": "step"}}, {"config.schedule.name": "step"}, "config.schedule.step_size", None),
    ({"schedule": {"name": "step", "step_size": 2, "gamma": 2}},
     {"config.schedule.name": "step", "config.schedule.step_size": "2", "config.schedule.gamma": "2"},
     "config.schedule.gamma", None),
    ({"schedule": {"name": "plateau", "factor": 1}},
     {"config.schedule.name": "plateau", "config.schedule.factor": "1"}, "config.schedule.factor", None),
    ({"schedule": {"name": "cosine", "t_max": 0}},
     {"config.schedule.name": "cosine", "config.schedule.t_max": "0"}, "config.schedule.t_max", None),
    ({"early_stopping": {"patience": -1}},
     {"config.early_stopping.enabled": "1", "config.early_stopping.patience": "-1"},
     "config.early_stopping.patience", None),
    ({"early_stopping": {"min_delta": -0.5}},
     {"config.early_stopping.enabled": "1", "config.early_stopping.min_delta": "-0.5"},
     "config.early_stopping.min_delta", None),
    ({"early_stopping": {"monitor": "train_loss"}},
     {"config.early_stopping.enabled": "1", "config.early_stopping.monitor": "train_loss"},
     "config.early_stopping.monitor", None),
]


@pytest.mark.parametrize("config, typed, field, slot_of", BAD_SETTINGS, ids=[c[2] for c in BAD_SETTINGS])
def test_the_form_and_the_api_refuse_bad_settings_with_the_same_message(client, config, typed, field, slot_of):
    api = client.post("/api/runs", json={"spec": DIGITS_MLP, "dataset": "digits", "config": config})
    assert api.status_code == 422, api.text
    messages = [e["message"] for e in api.json()["errors"] if e["field"] == field]
    assert messages, api.json()
    form = client.post("/runs", data=browser_form(client, **typed), headers={"HX-Request": "true"})
    assert form.status_code == 422, form.text
    shown = slot(form.text, (slot_of or field).replace(".", "-") + "-errors")  # the input named by the path
    for message in messages:
        assert message.startswith(f"{field}: ")
        assert message.removeprefix(f"{field}: ") in shown, (message, shown)
    assert client.get("/api/runs").json()["total"] == 0


def test_a_fresh_form_launches_exactly_the_schema_defaults(client):
    from app.runs.schemas import TrainConfigIn

    response = client.post("/runs", data=browser_form(client), follow_redirects=False)
    assert response.status_code == 303, response.text
    assert client.get("/api/runs/1").json()["config"] == TrainConfigIn().to_engine_dict()


def test_form_inputs_carry_the_schema_limits(client):
    from app.runs.schemas import SEED_MAX

    html = client.get("/runs/new").text

    def attrs(path: str) -> str:
        return re.search(rf'<input type="text" id="{path.replace(".", "-")}"[^>]*>', html, re.S).group(0)

    assert 'min="0"' in attrs("config.seed") and f'max="{SEED_MAX}"' in attrs("config.seed")
    assert 'min="1"' in attrs("config.top_k") and 'max="20"' in attrs("config.top_k")
    assert 'min="1"' in attrs("config.epochs") and 'step="1"' in attrs("config.epochs")
    assert 'step="any"' in attrs("config.optimizer.lr") and "min=" not in attrs("config.optimizer.lr")  # lr > 0


@pytest.mark.parametrize("typed, status", [
    ({"config.optimizer": "adam"}, 422),
    ({"config.optimizer.betas.7": "0.5"}, 422),
    ({"config.optimizer.betas.0": "0.5"}, 422),
    ({"config.epochs.x": "1"}, 422),
    ({"config.": "1"}, 422),
    ({"config.colour": "blue"}, 422),
    ({"config.schedule.name": "step", "config.schedule.step_size": "9" * 5000}, 422),
    ({"config.seed": "9" * 5000, "config.optimizer.lr": "nan"}, 422),
    ({"config.schedule.enabled": "1", "config.schedule.name": ""}, 422),
    ({"config": "1"}, 303),  # not a setting: ignored, as any other unknown field
    ({"config.early_stopping.enabled": "maybe"}, 303),  # a switch is on unless it says off
    ({"config.optimizer.name": "", "config.loss": ""}, 303),  # empty: the schema's default
])
def test_the_launch_form_answers_any_input_without_a_500(client, typed, status):
    response = client.post("/runs", data=browser_form(client, **typed), follow_redirects=False)
    assert response.status_code == status, response.text
    if status == 422:  # said next to an input, or over the form for a field that has none
        assert "Nothing was queued" in response.text
        assert re.search(r'<p class="error" role="alert">(?!Nothing was queued)', response.text)


def test_every_default_of_the_schema_is_the_engines_default():
    from app.engine.types import TrainConfig
    from app.runs.schemas import TrainConfigIn

    schema, engine = TrainConfigIn().to_engine_dict(), TrainConfig().to_dict()
    assert set(schema) == {f.name for f in fields(TrainConfig)}
    for name, value in engine.items():
        assert schema[name] == value, name
