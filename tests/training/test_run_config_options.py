"""GET /runs/config-options/: the new-run form's choices, read from the engine's TrainConfig, so
what the form offers is exactly what a run accepts."""

from __future__ import annotations

import dataclasses

from personas import assert_error
from tinyforge.ml.config import PRESETS, TrainConfig
from tinyforge.training.services import resolve_config


def options(client):
    response = client.get("/api/v1/runs/config-options/")
    assert response.status_code == 200, response.content
    return response.json()


def test_it_lists_every_hyperparameter_of_the_engine_with_its_default_and_help(client_for, vic, acme):
    data = options(client_for(vic))  # a viewer may look: the form shows them read-only
    by_name = {h["name"]: h for h in data["hyperparameters"]}
    engine = {f.name for f in dataclasses.fields(TrainConfig)} - {"base_model", "method"}
    assert set(by_name) == engine
    assert by_name["lr_schedule"]["type"] == "choice" and by_name["lr_schedule"]["choices"] == ["cosine", "linear", "constant"]
    assert by_name["batch_size"] == {**by_name["batch_size"], "type": "int", "default": 8, "nullable": False}
    assert by_name["learning_rate"]["nullable"] and by_name["learning_rate"]["default"] is None
    assert by_name["lora_target_modules"]["type"] == "list"
    assert all(h["help"] for h in data["hyperparameters"])
    assert "smollm2-135m-instruct" in [m["name"] for m in data["base_models"]]


def test_it_resolves_each_preset_per_method_as_a_run_would_get_it(client_for, alice, acme):
    data = options(client_for(alice))
    assert [p["name"] for p in data["presets"]] == list(PRESETS)
    for preset in data["presets"]:
        assert preset["overrides"] == PRESETS[preset["name"]]
        for method in ("lora", "full"):
            run_config = resolve_config(base_model="smollm2-135m-instruct", method=method, config={"preset": preset["name"]},
                                        team_id=None)
            assert {**preset["resolved"][method], "base_model": "smollm2-135m-instruct", "method": method} == run_config
    quick = next(p for p in data["presets"] if p["name"] == "quick")
    assert quick["resolved"]["lora"]["learning_rate"] == 1e-3 and quick["resolved"]["full"]["learning_rate"] == 2e-5
    assert quick["resolved"]["full"]["epochs"] == 1.0


def test_it_answers_401_when_signed_out(client):
    assert_error(client.get("/api/v1/runs/config-options/"), 401)
