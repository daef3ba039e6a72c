"""Schemathesis over the whole control-plane schema, as the outside attack and fault run of issue 15
did it: two teams' tokens, generated requests for every operation, then create -> read -> update ->
delete chains that schemathesis infers from the schema. Any 5xx, answer the schema does not
describe, or answer that shows the other team's rows fails the test, with every failure listed.

Bounded in examples (FUZZ_EXAMPLES per operation, FUZZ_STEPS stateful steps) so the suite stays
quick; CI runs it against PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

FUZZ_EXAMPLES = int(os.environ.get("TINYFORGE_FUZZ_EXAMPLES", "6"))
# The chains test asserts that some creation was followed by its id: with ~110 operations to draw
# from, 60 steps (derandomized) stopped reaching one when the feedback endpoints were added.
FUZZ_STEPS = int(os.environ.get("TINYFORGE_FUZZ_STEPS", "100"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Server-Sent Events never end by themselves; the stream tests in tests/training cover them.
ENDLESS = {("GET", "/api/v1/runs/{id}/stream/"), ("POST", "/api/v1/deployments/{id}/chat/")}


@pytest.fixture
def callers(acme, globex, alice, charlie, token_client):
    """{team name: (Authorization header, the other team's name)}: each caller must never see
    the other team's name, which every object of that team carries (personas.populate_team)."""
    found = {}
    for world, user, other in ((acme, alice, "Globex"), (globex, charlie, "Acme")):
        client, _ = token_client(user, world.team, ["read", "write", "inference"])
        found[world.team.name] = (client._credentials["HTTP_AUTHORIZATION"], other)
    return found


@pytest.fixture
def api_schema(monkeypatch):
    import django.db

    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = get_wsgi_application()
    # As Django's test client does: schemathesis calls the WSGI handler itself, whose request
    # signals would close the test's database connection inside its transaction (PostgreSQL's
    # closes for real, and every later request answered 500).
    # A run's event stream makes the same call when it ends (training.views.run_stream).
    monkeypatch.setattr(django.db, "close_old_connections", lambda **kwargs: None)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def cross_team(other_team: str):
    def check(ctx, response, case):
        if other_team in response.text:
            raise AssertionError(f"{case.method} {case.formatted_path} showed {other_team}'s data: "
                                 f"{response.text[:300]}")
    return check


def fuzzable(schema):
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in ENDLESS and operation.path.startswith("/api/"):
            yield operation


def test_every_operation_answers_as_its_schema_says_to_both_teams(api_schema, callers):
    failures = []
    for operation in fuzzable(api_schema):
        # Requests that fit the schema and requests that do not (wrong types, missing fields...).
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @hypothesis.given(case=cases, team=st.sampled_from(sorted(callers)))
        @hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate],
                             suppress_health_check=list(HealthCheck))
        def fuzz(case, team):
            authorization, other = callers[team]
            case.call_and_validate(headers={"Authorization": authorization}, checks=CHECKS,
                                   additional_checks=[cross_team(other)])

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures are collected, then reported
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_create_read_update_delete_chains_answer_as_the_schema_says(api_schema, callers, acme):
    authorization, other = callers["Acme"]
    # Random ids rarely name an object: the bodies' references point at Acme's own objects, so that
    # creations succeed and the chains go on from what they made (the test above sends random ones).
    own = {"team": acme.team.pk, "project": acme.project.pk, "dataset": acme.dataset.pk,
           "dataset_version": acme.version.pk, "parent": acme.version.pk, "run": acme.run.pk,
           "checkpoint": acme.checkpoint.pk, "connection": acme.connection.pk, "deployment": acme.deployment.pk}

    @api_schema.hook
    def flatmap_body(context, body):
        if not isinstance(body, dict):
            return st.just(body)
        return st.just({key: own.get(key, value) for key, value in body.items()})

    machine = api_schema.as_state_machine()
    calls = []

    class Workflow(machine):
        # Each scenario starts from the same database (a savepoint rolled back after it): hypothesis
        # replays scenarios and needs the same answers to the same calls.
        def setup(self):
            self.savepoint = transaction.atomic()
            self.savepoint.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self.savepoint.__exit__(None, None, None)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": authorization}}

        def after_call(self, response, case):
            made = response.json().get("id") if case.method.upper() == "POST" and response.status_code == 201 else None
            calls.append((case.method.upper(), case.path, response.status_code,
                          (case.path_parameters or {}).get("id"), made))

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, additional_checks=[cross_team(other)],
                                   transport_kwargs=kwargs or None)

    run_state_machine_as_test(Workflow, settings=hypothesis.settings(
        max_examples=FUZZ_STEPS, stateful_step_count=10, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
    # The chains really ran: objects were created, then read, changed or deleted by the id the
    # creation answered.
    created = {(path, made) for _method, path, _status, _id, made in calls if made is not None}
    followed = [(method, path, status) for method, path, status, pk, _made in calls
                if (path.rsplit("{id}", 1)[0], pk) in created and status in (200, 204)]

    assert followed, calls
