"""The loop through the platform's running inference service: every answer the OpenAI-compatible
API returns (whole or streamed, chat or text, from a token or the Playground) is kept under the
id its caller got, a team's application sends feedback for that id with its own token, and the
feedback becomes a dataset version."""

from __future__ import annotations

import json

import openai
import pytest

from deployments.conftest import inference_secret, trained_run, wait_for_status, work_off
from tinyforge.datasets.jobs import ingest_version
from tinyforge.datasets.models import DatasetVersion
from tinyforge.deployments.inference import team_key
from tinyforge.deployments.models import Completion

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "What is the capital of Zorbland?"}]


def test_every_answer_has_an_id_that_feedback_and_datasets_resolve(acme, alice, client_for, token_client, queues,
                                                                  inference_service, live_server, trained_model_dir):
    response = client_for(alice).post("/api/v1/deployments/", {"name": "zorb", "run": trained_run(acme, trained_model_dir).pk},
                                      format="json")
    assert response.status_code == 201, response.content
    work_off(queues)
    deployment = wait_for_status(acme.deployment.__class__.all_teams.get(pk=response.json()["id"]), "ready")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=inference_secret(alice, acme.team), max_retries=0)

    whole = client.chat.completions.create(model="zorb", messages=QUESTION, max_tokens=6, temperature=0)
    chunks = list(client.chat.completions.create(model="zorb", messages=QUESTION, max_tokens=6, temperature=1.5,
                                                 seed=3, stream=True))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    text = client.completions.create(model="zorb", prompt="Zorbland", max_tokens=4, temperature=0)
    private = client.chat.completions.create(model="zorb", messages=QUESTION, max_tokens=2, store=False)
    # The platform's own jobs (a teacher, a judge) call with a team key: nobody rates those answers.
    own = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=team_key(acme.team.pk), max_retries=0)
    job_answer = own.chat.completions.create(model="zorb", messages=QUESTION, max_tokens=2)

    kept = {c.id: c for c in Completion.all_teams.filter(deployment=deployment)}
    assert set(kept) == {whole.id, chunks[0].id, text.id}
    assert private.id not in kept and job_answer.id not in kept
    assert kept[whole.id].answer == whole.choices[0].message.content and kept[whole.id].prompt == QUESTION
    assert kept[chunks[0].id].answer == streamed_text
    assert kept[text.id].prompt == "Zorbland" and kept[text.id].kind == "completion"
    assert {(c.deployment_id, c.run_id, c.source) for c in kept.values()} == {(deployment.pk, deployment.run_id, "api")}
    assert kept[whole.id].checkpoint_id == deployment.checkpoint_id

    # The Playground's answers are kept too, under the id its stream carries.
    played = client_for(alice).post(f"/api/v1/deployments/{deployment.pk}/chat/", {"messages": QUESTION, "max_tokens": 4},
                                    format="json")
    assert played.status_code == 200, played.content
    events = [json.loads(line[6:]) for line in b"".join(played.streaming_content).decode().splitlines()
              if line.startswith("data: {")]
    assert Completion.all_teams.get(pk=events[0]["id"], deployment=deployment).source == "playground"

    # The team's application sends its users' feedback with its inference token.
    app, _ = token_client(alice, acme.team, ["inference"])
    assert app.post("/api/v1/feedback/", {"completion": whole.id, "compared_with": chunks[0].id,
                                          "preferred": "tie" if whole.choices[0].message.content == streamed_text
                                          else chunks[0].id}, format="json").status_code == 201
    assert app.post("/api/v1/feedback/", {"completion": whole.id, "correction": "Quillport."},
                    format="json").status_code == 201
    assert app.post("/api/v1/feedback/", {"completion": private.id, "rating": "up"}, format="json").status_code == 404

    made = client_for(alice).post("/api/v1/feedback/dataset-version/", {"dataset": acme.dataset.pk, "kind": "pairs",
                                                                       "deployment": deployment.pk}, format="json")
    assert made.status_code == 201, made.content
    ingest_version(made.json()["id"])
    version = DatasetVersion.all_teams.get(pk=made.json()["id"])
    assert version.status == "ready", version.error
    assert version.validation_report["invalid_count"] == 0
    assert version.row_count == (1 if whole.choices[0].message.content == streamed_text else 2)
