"""Feedback on kept answers (POST /api/v1/feedback/) and the dataset versions it becomes
(POST /api/v1/feedback/dataset-version/), with the answers kept as the inference service keeps
them (deployments/completions.py: keep_completion). The whole loop through a running service is
in test_feedback_loop.py."""

from __future__ import annotations

import json

import pytest

from personas import assert_error
from tinyforge.core import storage
from tinyforge.datasets.jobs import ingest_version
from tinyforge.datasets.models import DatasetVersion
from tinyforge.deployments.completions import drop_oldest_completions, keep_completion
from tinyforge.deployments.models import Completion, Deployment, Feedback
from tinyforge.serving.answers import Answer

QUESTION = [{"role": "user", "content": "What is the capital of Zorbland?"}]


@pytest.fixture(autouse=True)
def no_answers_yet(acme, globex):
    """Each test starts from teams whose deployments have answered nothing yet (the persona world
    holds one answer with a rating per team, for the tenancy walks)."""
    Completion.all_teams.all().delete()


def kept(world, text: str, *, prompt=None, id: str | None = None, source: str = "api", deployment=None) -> Completion:
    """An answer of the team's deployment (or `deployment`), kept as the inference service keeps it."""
    deployment = deployment or world.deployment
    number = Completion.all_teams.count() + 1
    answer = Answer(id=id or f"chatcmpl-{world.team.slug}{number:04d}", served_name=f"deployment-{deployment.pk}",
                    model_id=deployment.name, kind="chat" if prompt is None or isinstance(prompt, list)
                    else "completion", prompt=QUESTION if prompt is None else prompt, text=text, finish_reason="stop",
                    prompt_tokens=9, completion_tokens=4, caller="token tf_abc")
    return keep_completion(answer, deployment.pk, source)


def post_feedback(client, **body):
    return client.post("/api/v1/feedback/", body, format="json")


def test_it_keeps_an_answer_with_what_answered_it_and_resolves_its_id(acme, alice, client_for):
    answer = kept(acme, "Quillport.")
    shown = client_for(alice).get(f"/api/v1/completions/{answer.pk}/").json()
    assert shown["prompt"] == QUESTION and shown["answer"] == "Quillport."
    assert (shown["deployment"], shown["run"], shown["checkpoint"], shown["team"]) == (
        acme.deployment.pk, acme.run.pk, acme.checkpoint.pk, acme.team.pk)
    assert shown["model"] == acme.deployment.name and shown["source"] == "api"


def test_an_answer_or_prompt_holding_a_nul_character_is_kept_with_it_marked(acme, alice, client_for):
    """PostgreSQL refuses NUL in text and jsonb: the answer was not kept, so feedback on it was a 404
    (a tiny model wrote one in the preference journey)."""
    answer = kept(acme, "Quill\x00port.", prompt=[{"role": "user", "content": "Capital\x00?"}])
    assert post_feedback(client_for(alice), completion=answer.pk, correction="Quillport.").status_code == 201
    shown = client_for(alice).get(f"/api/v1/completions/{answer.pk}/").json()
    assert shown["answer"] == "Quill\ufffdport." and shown["prompt"] == [{"role": "user", "content": "Capital\ufffd?"}]


def test_another_teams_answer_is_not_found(acme, globex, alice, client_for, token_client):
    theirs = kept(globex, "Quillport.")
    assert_error(client_for(alice).get(f"/api/v1/completions/{theirs.pk}/"), 404)
    client, _ = token_client(alice, acme.team, ["inference"])
    for completion in (theirs.pk, "chatcmpl-doesnotexist"):
        error = assert_error(post_feedback(client, completion=completion, rating="up"), 404)
        assert completion in error["message"]
    mine = kept(acme, "Quillport.")
    error = assert_error(post_feedback(client, completion=mine.pk, compared_with=theirs.pk, preferred=mine.pk), 404)
    assert "compared_with" in error["message"]
    assert not Feedback.all_teams.exists()


def test_an_applications_inference_token_rates_corrects_and_chooses(acme, alice, token_client):
    client, token = token_client(alice, acme.team, ["inference"])
    first, second = kept(acme, "It is Quillport."), kept(acme, "Zorbland has no capital.")
    rated = post_feedback(client, completion=first.pk, rating="up")
    assert rated.status_code == 201, rated.content
    assert rated.json()["kind"] == "rating" and rated.json()["rating"] == "up" and rated.json()["source"] == "api"
    corrected = post_feedback(client, completion=second.pk, correction="The capital of Zorbland is Quillport.")
    assert corrected.status_code == 201 and corrected.json()["kind"] == "correction"
    chosen = post_feedback(client, completion=first.pk, compared_with=second.pk, preferred=first.pk)
    assert chosen.status_code == 201 and chosen.json()["preferred"] == first.pk
    tie = post_feedback(client, completion=first.pk, compared_with=second.pk, preferred="tie")
    assert tie.status_code == 201 and tie.json()["preferred"] is None
    assert Feedback.all_teams.filter(token=token, created_by=alice).count() == 4
    listed = client.get("/api/v1/feedback/", {"completion": first.pk})
    assert listed.status_code == 403  # listing is reading the control plane: an inference token does not


def test_a_team_that_requires_write_refuses_an_inference_only_token(acme, alice, vic, token_client, client_for):
    response = client_for(alice).patch(f"/api/v1/teams/{acme.team.pk}/", {"feedback_requires_write": True},
                                       format="json")
    assert response.status_code == 200 and response.json()["feedback_requires_write"] is True
    answer = kept(acme, "Quillport.")
    inference, _ = token_client(alice, acme.team, ["inference"])
    error = assert_error(post_feedback(inference, completion=answer.pk, rating="down"), 403)
    assert "'write' scope" in error["message"] and "feedback_requires_write" in error["message"]
    writer, _ = token_client(alice, acme.team, ["write"])
    assert post_feedback(writer, completion=answer.pk, rating="down").status_code == 201
    assert_error(post_feedback(client_for(vic), completion=answer.pk, rating="down"), 403)  # a viewer
    assert post_feedback(client_for(alice), completion=answer.pk, rating="down").json()["source"] == "playground"


def test_a_read_token_gives_no_feedback_even_by_default(acme, alice, token_client):
    reader, _ = token_client(alice, acme.team, ["read"])
    error = assert_error(post_feedback(reader, completion=kept(acme, "Quillport.").pk, rating="up"), 403)
    assert "'inference' or 'write'" in error["message"]


@pytest.mark.parametrize("body, field, words", [
    ({"rating": "meh"}, "rating", "not a valid choice"),
    ({"rating": "up", "correction": "Quillport."}, "rating", "exactly one of"),
    ({}, "non_field_errors", "exactly one of"),
    ({"correction": "  "}, "correction", "blank"),
    ({"correction": "Quillport."}, "correction", "the answer itself"),
    ({"preferred": "tie", "rating": "up"}, "preferred", "Only with compared_with"),
    ({"compared_with": "SAME", "preferred": "tie"}, "compared_with", "two different answers"),
    ({"compared_with": "OTHER_PROMPT", "preferred": "tie"}, "compared_with", "another prompt"),
    ({"compared_with": "TWIN", "preferred": "SELF"}, "preferred", "the same text"),
    ({"compared_with": "TWIN", "preferred": "chatcmpl-x"}, "preferred", '"tie"'),
    ({"unknown": 1, "rating": "up"}, "unknown", "Unknown"),
])
def test_bad_feedback_is_refused_naming_the_field(acme, alice, client_for, body, field, words):
    answer = kept(acme, "Quillport.")
    ids = {"SAME": answer.pk, "SELF": answer.pk, "TWIN": kept(acme, "Quillport.").pk,
           "OTHER_PROMPT": kept(acme, "Blue.", prompt=[{"role": "user", "content": "Sky colour?"}]).pk}
    body = {key: ids.get(value, value) for key, value in body.items()}
    error = assert_error(post_feedback(client_for(alice), completion=answer.pk, **body), 400)
    messages = [error["message"]] if field == "non_field_errors" else error["fields"][field]  # general: the message
    assert any(words in message for message in messages), error
    assert not Feedback.all_teams.exists()


def test_the_oldest_answers_without_feedback_are_dropped_past_the_limit(acme, globex, alice, client_for):
    answers = [kept(acme, f"answer {i}") for i in range(6)]
    theirs = kept(globex, "theirs")
    assert post_feedback(client_for(alice), completion=answers[0].pk, rating="up").status_code == 201
    assert drop_oldest_completions(acme.team.pk, keep=2) == 3
    left = set(Completion.all_teams.values_list("id", flat=True))
    assert left == {answers[0].pk, answers[4].pk, answers[5].pk, theirs.pk}  # feedback keeps its answer
    assert drop_oldest_completions(acme.team.pk, keep=2) == 0


def version_rows(client, ingested_id: int) -> list[dict]:
    ingest_version(ingested_id)
    version = DatasetVersion.all_teams.get(pk=ingested_id)
    assert version.status == "ready", version.error
    return [json.loads(line) for line in storage.path(version.storage_key).read_text().splitlines()]


def test_feedback_becomes_pairs_unpaired_and_supervised_versions(acme, alice, bob, client_for,
                                                                django_capture_on_commit_callbacks):
    client = client_for(alice)
    good, bad = kept(acme, "The capital is Quillport."), kept(acme, "Zorbland is a planet.")
    raw = kept(acme, "Zorb", prompt="The capital of Zorbland is")
    for body in ({"completion": good.pk, "compared_with": bad.pk, "preferred": good.pk},
                 {"completion": bad.pk, "correction": "Quillport is the capital of Zorbland."},
                 {"completion": bad.pk, "rating": "up"}, {"completion": bad.pk, "rating": "down"},  # changed their mind
                 {"completion": good.pk, "rating": "up"},
                 {"completion": raw.pk, "correction": "Quillport"}):
        assert post_feedback(client, **body).status_code == 201

    summary = client.get("/api/v1/feedback/summary/", {"deployment": acme.deployment.pk}).json()
    assert summary == {"feedback": 6, "rows": {"pairs": 3, "unpaired": 2, "supervised": 2}}

    made = {}
    for kind in ("pairs", "unpaired", "supervised"):
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post("/api/v1/feedback/dataset-version/", {"dataset": acme.dataset.pk, "kind": kind,
                                                                        "deployment": acme.deployment.pk}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["source_kind"] == "feedback"
        made[kind] = version_rows(client, response.json()["id"])

    pairs = [(row["prompt"], row["chosen"], row["rejected"]) for row in made["pairs"]]
    assert pairs == [(QUESTION, "The capital is Quillport.", "Zorbland is a planet."),
                     (QUESTION, "Quillport is the capital of Zorbland.", "Zorbland is a planet."),
                     ("The capital of Zorbland is", "Quillport", "Zorb")]
    assert [(row["completion"], row["label"]) for row in made["unpaired"]] == [
        ("Zorbland is a planet.", False), ("The capital is Quillport.", True)]  # the latest rating of each
    assert made["supervised"] == [
        {"messages": [*QUESTION, {"role": "assistant", "content": "Quillport is the capital of Zorbland."}],
         "metadata": made["supervised"][0]["metadata"]},
        {"instruction": "The capital of Zorbland is", "output": "Quillport", "metadata": made["supervised"][1]["metadata"]}]
    source = made["pairs"][0]["metadata"]
    assert (source["completion"], source["deployment"], source["run"], source["checkpoint"]) == (
        good.pk, acme.deployment.pk, acme.run.pk, acme.checkpoint.pk)


def test_a_choice_between_two_deployments_answers_is_feedback_on_both(acme, alice, client_for,
                                                                   django_capture_on_commit_callbacks):
    """The Playground's compare mode sends the left answer as `completion`: the choice must count
    for the deployment on the right too (it counted only for the left one's dataset versions)."""
    client = client_for(alice)
    other = Deployment.all_teams.create(team=acme.team, project=acme.project, name="acme-early", run=acme.run,
                                        checkpoint=acme.checkpoint)
    left, right = kept(acme, "The capital is Quillport."), kept(acme, "Zorbland is a planet.", deployment=other)
    assert post_feedback(client, completion=left.pk, compared_with=right.pk, preferred=left.pk).status_code == 201
    assert post_feedback(client, completion=right.pk, correction="Quillport.").status_code == 201
    for deployment, pairs in ((acme.deployment, 1), (other, 2)):
        summary = client.get("/api/v1/feedback/summary/", {"deployment": deployment.pk}).json()
        assert summary == {"feedback": pairs, "rows": {"pairs": pairs, "unpaired": 0, "supervised": pairs - 1}}
        listed = client.get("/api/v1/feedback/", {"deployment": deployment.pk}).json()["results"]
        assert len(listed) == pairs
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/api/v1/feedback/dataset-version/", {"dataset": acme.dataset.pk, "kind": "pairs",
                                                                     "deployment": other.pk}, format="json")
    assert response.status_code == 201, response.content
    rows = version_rows(client, response.json()["id"])
    assert [(row["chosen"], row["rejected"]) for row in rows] == [
        ("The capital is Quillport.", "Zorbland is a planet."), ("Quillport.", "Zorbland is a planet.")]


def test_a_version_from_feedback_that_gives_no_rows_of_that_kind_is_refused(acme, alice, client_for):
    client = client_for(alice)
    assert post_feedback(client, completion=kept(acme, "Quillport.").pk, rating="up").status_code == 201
    error = assert_error(client.post("/api/v1/feedback/dataset-version/", {"dataset": acme.dataset.pk, "kind": "pairs"},
                                     format="json"), 400)
    assert "No feedback on the team's deployments gives preference pairs" in error["fields"]["kind"][0]
    assert not DatasetVersion.all_teams.filter(source_kind="feedback").exists()


def test_only_members_make_versions_and_only_of_their_teams_datasets(acme, globex, alice, vic, client_for):
    assert post_feedback(client_for(alice), completion=kept(acme, "Quillport.").pk, rating="up").status_code == 201
    body = {"dataset": acme.dataset.pk, "kind": "unpaired"}
    assert_error(client_for(vic).post("/api/v1/feedback/dataset-version/", body, format="json"), 403)
    foreign = {"dataset": globex.dataset.pk, "kind": "unpaired"}
    assert_error(client_for(alice).post("/api/v1/feedback/dataset-version/", foreign, format="json"), 400)
