"""Wherever the API takes a model (runs, estimates, dataset reports and previews, import options,
the OpenAI fine-tuning mirror) it takes a preset, a model the server names, a Hugging Face id, or
run:<id> / checkpoint:<id> of the same team, never a server path, and a refusal says the same
whatever exists on the server."""

from __future__ import annotations

import json
import shutil

import pytest

from ml.conftest import TOY_FACTS
from personas import assert_error
from tinyforge.core import storage
from tinyforge.training.models import Checkpoint, TrainingRun
from training.conftest import make_version


@pytest.fixture
def model_run(globex, acme, tiny_model_dir):
    """A finished run of each team with a real model in its output folder and checkpoint."""

    def give(world):
        run = world.run
        run.output_key = storage.run_output_key(run.project_id, run.pk)
        run.save()
        shutil.copytree(tiny_model_dir, storage.path(run.output_key), dirs_exist_ok=True)
        world.checkpoint.storage_key = storage.checkpoint_key(run.project_id, run.pk, world.checkpoint.step)
        world.checkpoint.save()
        shutil.copytree(tiny_model_dir, storage.path(world.checkpoint.storage_key), dirs_exist_ok=True)
        return run

    return give(acme), give(globex)


def paths_of_the_server(globex_run):
    """Server paths a caller could try: another team's run folder (a real model), folders that
    exist, and one that does not."""
    foreign = storage.path(storage.run_output_key(globex_run.project_id, globex_run.pk))
    return [str(foreign), str(storage.root()), "/etc", "/nonexistent/model", "~", "../../..", "./model",
            f"file://{foreign}"]


def ask_everywhere(client, acme, base_model):
    """Every place the API takes a model, asked with `base_model`: [(where, response)]."""
    version = acme.version
    run_body = {"project": acme.project.pk, "name": "r", "dataset_version": version.pk, "base_model": base_model,
                "method": "lora", "config": {}}
    return [
        ("runs", client.post("/api/v1/runs/", run_body, format="json")),
        ("runs/estimate", client.post("/api/v1/runs/estimate/", run_body, format="json")),
        ("report", client.get(f"/api/v1/dataset-versions/{version.pk}/report/", {"base_model": base_model})),
        ("preview", client.get(f"/api/v1/dataset-versions/{version.pk}/preview/", {"base_model": base_model})),
        ("import options", client.post("/api/v1/dataset-versions/", {
            "dataset": acme.dataset.pk, "source_kind": "derived", "parent": version.pk,
            "source_config": {"base_model": base_model}}, format="json")),
    ]


def refusal(response) -> str:
    body = assert_error(response, 400)
    (messages,) = [v for k, v in body["fields"].items() if k.endswith("base_model")]
    return messages[0]


def test_no_server_path_is_a_model_and_every_refusal_reads_the_same(client_for, alice, acme, globex, model_run):
    _acme_run, globex_run = model_run
    client = client_for(alice)
    reasons = set()
    for path in paths_of_the_server(globex_run):
        for where, response in ask_everywhere(client, acme, path):
            message = refusal(response)
            assert message.startswith(f"Unknown base model {path!r}: "), (where, message)
            reasons.add(message.removeprefix(f"Unknown base model {path!r}: "))
    assert len(reasons) == 1, reasons  # nothing tells an existing folder from a missing one


def test_runs_and_checkpoints_of_the_team_are_models_by_id_and_another_teams_are_unknown(
        client_for, alice, acme, globex, model_run):
    acme_run, globex_run = model_run
    client = client_for(alice)
    for reference in (f"run:{acme_run.pk}", f"checkpoint:{acme.checkpoint.pk}"):
        report = client.get(f"/api/v1/dataset-versions/{acme.version.pk}/report/", {"base_model": reference})
        assert report.status_code == 409, report.content  # the model is fine; the fixture version has no file
        assert "base_model" not in json.dumps(report.json()["error"]["fields"])
    foreign = {f"run:{globex_run.pk}": f"No run {globex_run.pk} in this team.",
               f"checkpoint:{globex.checkpoint.pk}": f"No checkpoint {globex.checkpoint.pk} in this team.",
               "run:99999999": "No run 99999999 in this team."}
    for reference, expected in foreign.items():
        for where, response in ask_everywhere(client, acme, reference):
            if where.startswith("runs"):  # starting a run from it: not found, as another team's run is
                assert assert_error(response, 404)["message"] == expected, (where, reference)
            else:
                assert refusal(response) == expected, (where, reference)


@pytest.mark.parametrize("status", ["failed", "running", "cancelled", "succeeded"])
def test_a_run_started_from_a_run_without_weights_is_a_conflict(client_for, alice, acme, toy_version, status):
    """A preference run from a failed (or unfinished) run has nothing to start from: 409 naming it."""
    acme.run.status = status
    acme.run.output_key = ""  # a succeeded run whose final model was never written counts the same
    acme.run.save()
    body = {"project": acme.project.pk, "name": "dpo", "dataset_version": toy_version.pk,
            "base_model": f"run:{acme.run.pk}", "method": "lora", "config": {"objective": "dpo"}}
    for url in ("/api/v1/runs/", "/api/v1/runs/estimate/"):
        message = assert_error(client_for(alice).post(url, body, format="json"), 409)["message"]
        assert message.startswith(f"Run {acme.run.pk} is {status}"), message
    assert not TrainingRun.all_teams.filter(name="dpo").exists()


def test_a_preference_run_from_another_teams_run_is_not_found(client_for, token_client, alice, acme, model_run):
    """Issue 20's bad input: DPO, ORPO and KTO from a run of another team, on the team's own
    preference data, answer 404 as an unknown run does (the platform API and the OpenAI mirror)."""
    _acme_run, globex_run = model_run
    pairs = make_version(acme.dataset, b"".join(json.dumps(
        {"prompt": q, "chosen": f"Yes. {a}", "rejected": f"No. {a}"}).encode() + b"\n" for q, a in TOY_FACTS))
    for objective in ("dpo", "orpo", "kto"):
        body = {"project": acme.project.pk, "name": objective, "dataset_version": pairs.pk,
                "base_model": f"run:{globex_run.pk}", "method": "lora", "config": {"preset": objective}}
        for url in ("/api/v1/runs/", "/api/v1/runs/estimate/"):
            message = assert_error(client_for(alice).post(url, body, format="json"), 404)["message"]
            assert message == f"No run {globex_run.pk} in this team.", (objective, url)
    client, _ = token_client(alice, acme.team, ["read", "write"])
    response = client.post("/v1/fine_tuning/jobs", {"model": f"run:{globex_run.pk}", "training_file": f"file-{pairs.pk}",
                                                    "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}},
                           format="json")
    assert assert_error(response, 404)["message"] == f"No run {globex_run.pk} in this team."
    assert not TrainingRun.all_teams.filter(project=acme.project, name__in=["dpo", "orpo", "kto"]).exists()


def test_a_run_of_the_team_trains_and_tokenizes_like_its_folder(client_for, alice, acme, model_run, toy_version):
    acme_run, _ = model_run
    run_body = {"project": acme.project.pk, "name": "r", "dataset_version": toy_version.pk,
                "base_model": f"run:{acme_run.pk}", "method": "lora", "config": {"max_steps": 2}}
    estimate = client_for(alice).post("/api/v1/runs/estimate/", run_body, format="json")
    assert estimate.status_code == 200 and estimate.json()["steps"] == 2, estimate.content
    preview = client_for(alice).get(f"/api/v1/dataset-versions/{toy_version.pk}/preview/",
                                    {"base_model": f"run:{acme_run.pk}", "page_size": 1}).json()
    assert preview["base_model"] == f"run:{acme_run.pk}" and preview["results"][0]["segments"]


def test_the_openai_mirror_takes_no_path_either(token_client, alice, acme, globex, model_run, toy_version):
    _acme_run, globex_run = model_run
    client, _ = token_client(alice, acme.team, ["read", "write"])
    for model in paths_of_the_server(globex_run)[:3]:
        response = client.post("/v1/fine_tuning/jobs", {"model": model, "training_file": f"file-{toy_version.pk}"},
                               format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["fields"]["model"][0].startswith(f"Unknown base model {model[:100]!r}")
    response = client.post("/v1/fine_tuning/jobs", {"model": f"run:{globex_run.pk}",
                                                    "training_file": f"file-{toy_version.pk}"}, format="json")
    assert assert_error(response, 404)["message"] == f"No run {globex_run.pk} in this team."


def test_models_the_administrator_names_are_offered_and_accepted(client_for, alice, acme, tiny_base_model):
    options = client_for(alice).get("/api/v1/runs/config-options/").json()
    assert tiny_base_model in [m["name"] for m in options["base_models"]]
    preview = client_for(alice).get(f"/api/v1/dataset-versions/{acme.version.pk}/preview/",
                                    {"base_model": tiny_base_model})
    assert preview.status_code == 409  # past the model check: the fixture version has no file


def test_an_evaluation_of_a_runs_base_model_loads_it_as_the_run_did(make_run, tiny_base_model, tiny_model_dir,
                                                                    model_run, acme):
    from tinyforge.evals.jobs import _folder

    run = make_run()  # base model: the server-named tiny model
    assert _folder({"kind": "base", "run": run.pk}) == tiny_model_dir
    acme_run, _ = model_run
    on_a_run = make_run(base_model=f"run:{acme_run.pk}")
    assert _folder({"kind": "base", "run": on_a_run.pk}) == storage.path(storage.run_output_key(acme_run.project_id,
                                                                                                acme_run.pk))
