"""Who reaches which deployment: inference-scoped tokens see their own team's deployments only
(under their own names, even when another team uses the same name), and the Playground chats
over a signed-in session with CSRF, streamed token by token."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from deployments.conftest import inference_secret, trained_run, wait_for_status, work_off
from personas import PASSWORD, assert_error
from tinyforge.deployments.models import Deployment

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "What is the capital of Zorbland?"}]


@pytest.fixture
def two_teams_deployed(acme, globex, alice, charlie, client_for, queues, inference_service, trained_model_dir):
    """Acme and Globex each deploy a model named "assistant" (Acme's merged, so they differ)."""
    deployments = {}
    for world, owner, merge in ((acme, alice, True), (globex, charlie, False)):
        run = trained_run(world, trained_model_dir)
        response = client_for(owner).post("/api/v1/deployments/", {"name": "assistant", "run": run.pk,
                                                                   "merge_adapter": merge}, format="json")
        assert response.status_code == 201, response.content
        deployments[world.team.slug] = Deployment.all_teams.get(pk=response.json()["id"])
    work_off(queues)
    for deployment in deployments.values():
        wait_for_status(deployment, "ready")
    return deployments


def test_each_team_sees_only_its_own_deployments_under_their_names(acme, globex, alice, charlie, live_server,
                                                                    two_teams_deployed):
    for user, world in ((alice, acme), (charlie, globex)):
        client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=inference_secret(user, world.team), max_retries=0)
        models = client.models.list().data
        assert [m.id for m in models] == ["assistant"]
        assert models[0].owned_by == world.team.slug
        answer = client.chat.completions.create(model="assistant", messages=QUESTION, max_tokens=4, temperature=0)
        assert answer.model == "assistant"
        # The other team's deployment is not there at all: a 404, as for a name nobody uses.
        for name in (f"deployment-{two_teams_deployed['globex' if world is acme else 'acme'].pk}", "nobody"):
            with pytest.raises(openai.NotFoundError) as info:
                client.chat.completions.create(model=name, messages=QUESTION, max_tokens=2)
            assert info.value.body["code"] == "model_not_found"


def test_tokens_without_the_inference_scope_or_valid_secret_are_refused(acme, alice, live_server, two_teams_deployed):
    read_write = openai.OpenAI(base_url=f"{live_server.url}/v1", max_retries=0,
                               api_key=inference_secret(alice, acme.team, scopes=("read", "write")))
    with pytest.raises(openai.PermissionDeniedError) as info:
        read_write.models.list()
    assert "lacks the 'inference' scope" in info.value.message
    for secret in ("tf_not-a-token", "tfplay_forged.signature"):
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0).models.list()


def sse_data(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_the_playground_streams_over_a_session_with_csrf(acme, alice, vic, live_server, two_teams_deployed):
    deployment = two_teams_deployed["acme"]
    for user in (alice, vic):  # a viewer may try the model too: chatting changes nothing
        with httpx.Client(base_url=live_server.url, timeout=60) as browser:
            browser.get("/api/v1/auth/csrf/")
            csrf = browser.cookies["csrftoken"]
            login = browser.post("/api/v1/auth/login/", json={"username": user.username, "password": PASSWORD},
                                 headers={"X-CSRFToken": csrf})
            assert login.status_code == 200, login.text
            csrf = browser.cookies["csrftoken"]
            path = f"/api/v1/deployments/{deployment.pk}/chat/"
            body = {"messages": QUESTION, "temperature": 0, "max_tokens": 6, "stream": True}

            refused = browser.post(path, json=body, headers={"Accept": "text/event-stream"})
            assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]

            pieces = []
            with browser.stream("POST", path, json=body, headers={"X-CSRFToken": csrf,
                                                                  "Accept": "text/event-stream"}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for chunk in response.iter_text():
                    pieces.append(chunk)
            events = sse_data("".join(pieces))
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert all(c["object"] == "chat.completion.chunk" and c["model"] == "assistant" for c in chunks)
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) >= 2

            whole = browser.post(path, json={**body, "stream": False}, headers={"X-CSRFToken": csrf})
            assert whole.status_code == 200 and whole.json()["choices"][0]["message"]["content"] == text


def test_playground_errors_use_the_platform_error_body(acme, globex, alice, client_for, token_client, live_server,
                                                       two_teams_deployed):
    mine, theirs = two_teams_deployed["acme"], two_teams_deployed["globex"]
    client = client_for(alice)
    error = assert_error(client.post(f"/api/v1/deployments/{mine.pk}/chat/", {"messages": [], "max_tokens": 0},
                                     format="json"), 400)
    assert error["fields"]
    assert_error(client.post(f"/api/v1/deployments/{theirs.pk}/chat/", {"messages": QUESTION}, format="json"), 404)

    token, _ = token_client(alice, acme.team, ["read", "write"])
    assert_error(token.post(f"/api/v1/deployments/{mine.pk}/chat/", {"messages": QUESTION}, format="json"), 403)
    token, _ = token_client(alice, acme.team, ["inference"])
    answer = token.post(f"/api/v1/deployments/{mine.pk}/chat/", {"messages": QUESTION, "stream": False,
                                                               "max_tokens": 3}, format="json")
    assert answer.status_code == 200 and answer.json()["model"] == "assistant"

    client.post(f"/api/v1/deployments/{mine.pk}/stop/")
    error = assert_error(client.post(f"/api/v1/deployments/{mine.pk}/chat/", {"messages": QUESTION}, format="json"), 409)
    assert "stopped" in error["message"]
