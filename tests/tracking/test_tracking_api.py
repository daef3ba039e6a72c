"""/api/v1/tracking-settings/<team>/ and /api/v1/tracked-runs/: who may read and change a team's
trackers, secrets that never come back, and URIs the server refuses."""

from __future__ import annotations

import pytest

from personas import assert_error
from tinyforge.core.models import AuditEvent
from tinyforge.tracking.models import TeamTracking, TrackedRun

pytestmark = pytest.mark.django_db


def url(team) -> str:
    return f"/api/v1/tracking-settings/{team.pk}/"


def test_it_saves_a_teams_trackers_with_the_secrets_encrypted_and_never_returned(client_for, alice, acme):
    body = {"mlflow_tracking_uri": "https://mlflow.example.com/", "mlflow_username": "acme",
            "mlflow_password": "hunter2-secret", "wandb_api_key": "wandb-key-123", "wandb_project": "acme-llms"}
    response = client_for(alice).put(url(acme.team), body, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["mlflow_tracking_uri"] == "https://mlflow.example.com"
    assert data["has_mlflow_password"] is True and data["has_wandb_api_key"] is True and data["has_mlflow_token"] is False
    assert "hunter2-secret" not in response.content.decode() and "wandb-key-123" not in response.content.decode()
    stored = TeamTracking.all_teams.get(team=acme.team)
    assert b"hunter2-secret" not in bytes(stored.encrypted_secrets)
    assert stored.secrets() == {"mlflow_password": "hunter2-secret", "wandb_api_key": "wandb-key-123"}
    # A secret left out is kept; "" removes it.
    response = client_for(alice).put(url(acme.team), {"mlflow_experiment": "llms", "wandb_api_key": ""}, format="json")
    assert response.status_code == 200
    assert TeamTracking.all_teams.get(team=acme.team).secrets() == {"mlflow_password": "hunter2-secret"}
    assert AuditEvent.all_teams.filter(team=acme.team, target_type="teamtracking").count() == 2
    assert client_for(alice).get(url(acme.team)).json()["mlflow_experiment"] == "llms"


@pytest.mark.parametrize("uri", ["file:///data/mlruns", "sqlite:////data/tinyforge.sqlite3", "mlruns",
                                 "databricks://profile", "http://"])
def test_a_tracking_uri_that_is_not_an_http_server_is_refused(client_for, alice, acme, uri):
    response = client_for(alice).put(url(acme.team), {"mlflow_tracking_uri": uri}, format="json")
    fields = assert_error(response, 400)["fields"]
    assert "mlflow_tracking_uri" in fields and "http://" in fields["mlflow_tracking_uri"][0]
    assert not TeamTracking.all_teams.filter(team=acme.team).exists()


def test_only_owners_change_tracking_and_members_read_it(client_for, alice, bob, vic, charlie, acme):
    client_for(alice).put(url(acme.team), {"mlflow_tracking_uri": "https://mlflow.example.com"}, format="json")
    for user in (bob, vic):
        assert client_for(user).get(url(acme.team)).json()["mlflow_tracking_uri"] == "https://mlflow.example.com"
        assert_error(client_for(user).put(url(acme.team), {"mlflow_tracking_uri": "https://evil.example.com"},
                                          format="json"), 403)
        assert_error(client_for(user).delete(url(acme.team)), 403)
    assert_error(client_for(charlie).get(url(acme.team)), 404)
    assert_error(client_for(charlie).put(url(acme.team), {"log_model": True}, format="json"), 404)
    assert client_for(alice).delete(url(acme.team)).status_code == 204
    assert not TeamTracking.all_teams.filter(team=acme.team).exists()


def test_a_team_without_settings_reads_the_server_wide_ones(client_for, bob, acme, settings):
    settings.MLFLOW_TRACKING_URI = "http://mlflow.internal:5000"
    data = client_for(bob).get(url(acme.team)).json()
    assert data["mlflow_tracking_uri"] == "" and data["server_mlflow"] == "http://mlflow.internal:5000"


def test_tracked_runs_are_listed_by_run_within_the_callers_teams(client_for, bob, charlie, acme, globex):
    TrackedRun.all_teams.create(run=acme.run, tracker="wandb", external_id="abc", url="https://wandb.ai/acme/x")
    rows = client_for(bob).get(f"/api/v1/tracked-runs/?run={acme.run.pk}").json()["results"]
    assert [(r["tracker"], r["external_id"]) for r in rows] == [("mlflow", "acme-mlflow-run"), ("wandb", "abc")]
    assert client_for(charlie).get(f"/api/v1/tracked-runs/?run={acme.run.pk}").json()["results"] == []
