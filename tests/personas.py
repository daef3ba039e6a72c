"""Personas and a populated world for the control-plane tests.

alice owns team Acme, bob is her teammate (member), vic is Acme's viewer, charlie owns team
Globex and is an outsider to Acme. Each team has one of every kind of object, so a test can
point at "another team's X" for any X.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tinyforge.accounts.models import ApiToken, Invitation, Membership, Role, Team
from tinyforge.core.models import AuditEvent, Event
from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion
from tinyforge.deployments.models import Completion, Deployment, Export, Feedback
from tinyforge.evals.models import EvalResult, EvalSet, EvalSetVersion, Evaluation, Gate
from tinyforge.projects.models import Project
from tinyforge.tracking.models import TrackedRun
from tinyforge.training.models import Checkpoint, RunMetric, TrainingRun

PASSWORD = "correct horse battery staple"


def make_user(username: str):
    return get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)


def populate_team(team: Team, owner) -> SimpleNamespace:
    """One object of every kind in `team`."""
    project = Project.all_teams.create(team=team, name=f"{team.name} project", created_by=owner)
    dataset = Dataset.all_teams.create(project=project, name="faq", created_by=owner)
    connection = DataConnection(project=project, name="warehouse", kind="sql", options={"dialect": "sqlite"})
    connection.set_credentials({"url": "sqlite:////tmp/x.db"})
    connection.save()
    version = DatasetVersion.all_teams.create(
        dataset=dataset, number=1, status="ready", source_kind="upload", storage_key="x", row_count=3
    )
    run = TrainingRun.all_teams.create(
        project=project, name="first run", dataset_version=version, base_model="smollm2-135m-instruct",
        status="succeeded",
    )
    checkpoint = Checkpoint.all_teams.create(run=run, step=10, storage_key="ck", eval_loss=1.5, is_best=True)
    metric = RunMetric.all_teams.create(run=run, step=1, name="loss", value=2.0)
    tracked = TrackedRun.all_teams.create(run=run, tracker="mlflow", external_id=f"{team.slug}-mlflow-run",
                                          url=f"https://mlflow.example.com/#/experiments/1/runs/{team.slug}-mlflow-run")
    event = Event.all_teams.create(project=project, subject=run, message="started", source="trainer")
    deployment = Deployment.all_teams.create(team=team, project=project, name=f"{team.slug}-model", run=run,
                                             checkpoint=checkpoint)
    export = Export.all_teams.create(project=project, run=run, checkpoint=checkpoint, format="hf")
    completion = Completion.all_teams.create(
        id=f"chatcmpl-{team.slug}", team=team, deployment=deployment, run=run, checkpoint=checkpoint,
        model=deployment.name, kind="chat", prompt=[{"role": "user", "content": "hi"}], answer="hello",
        finish_reason="stop", source="api")
    feedback = Feedback.all_teams.create(team=team, completion=completion, kind="rating", rating=True, source="api",
                                         created_by=owner)
    invitation = Invitation.all_teams.create(team=team, email="new@example.com", token_hash=f"hash-{team.slug}",
                                             invited_by=owner, expires_at=Invitation.default_expiry())
    _secret, prefix, token_hash = ApiToken.new_secret()
    token = ApiToken.all_teams.create(user=owner, team=team, name="ci", prefix=prefix, token_hash=token_hash,
                                      scopes=["read"])
    audit = AuditEvent.all_teams.create(team=team, project=project, actor=owner, action="created",
                                        target_type="project", target_id=str(project.pk))
    membership = Membership.all_teams.get(team=team, user=owner)
    eval_set = EvalSet.all_teams.create(project=project, name="facts", created_by=owner)
    eval_set_version = EvalSetVersion.all_teams.create(eval_set=eval_set, number=1, source_kind="rows", storage_key="e",
                                                       sha256="0" * 64, row_count=1)
    evaluation = Evaluation.all_teams.create(project=project, eval_set_version=eval_set_version, run=run,
                                             targets=[{"kind": "run", "run": run.pk, "label": run.name}],
                                             scorers=[{"name": "exact_match"}], status="succeeded")
    eval_result = EvalResult.all_teams.create(evaluation=evaluation, index=0, input="q", answers={})
    # Disabled: an enabled gate would hold back the deployments the other tests make in this world.
    gate = Gate.all_teams.create(project=project, eval_set=eval_set, scorer={"name": "exact_match"}, threshold=0.5,
                                 enabled=False)
    return SimpleNamespace(team=team, project=project, dataset=dataset, connection=connection, version=version,
                           run=run, checkpoint=checkpoint, metric=metric, tracked=tracked, event=event,
                           deployment=deployment, export=export, completion=completion, feedback=feedback,
                           invitation=invitation, token=token, audit=audit,
                           membership=membership, eval_set=eval_set, eval_set_version=eval_set_version, evaluation=evaluation,
                           eval_result=eval_result, gate=gate)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # PBKDF2's deliberate slowness would dominate these tests; the hash algorithm is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def vic(db):
    return make_user("vic")


@pytest.fixture
def charlie(db):
    return make_user("charlie")


@pytest.fixture
def acme(alice, bob, vic):
    team = Team.all_teams.create(name="Acme", slug="acme")
    Membership.all_teams.create(team=team, user=alice, role=Role.OWNER)
    Membership.all_teams.create(team=team, user=bob, role=Role.MEMBER)
    Membership.all_teams.create(team=team, user=vic, role=Role.VIEWER)
    return populate_team(team, alice)


@pytest.fixture
def globex(charlie):
    team = Team.all_teams.create(name="Globex", slug="globex")
    Membership.all_teams.create(team=team, user=charlie, role=Role.OWNER)
    return populate_team(team, charlie)


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient signed in with a real session (CSRF not enforced;
    the CSRF tests use their own client)."""

    def build(user=None):
        client = APIClient()
        if user is not None:
            client.force_login(user)
        return client

    return build


@pytest.fixture
def token_client():
    """token_client(user, team, scopes, **fields) -> (APIClient with Bearer auth, ApiToken)."""

    def build(user, team, scopes, **fields):
        secret, prefix, token_hash = ApiToken.new_secret()
        token = ApiToken.all_teams.create(user=user, team=team, name="test", prefix=prefix, token_hash=token_hash,
                                          scopes=scopes, **fields)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client, token

    return build


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
