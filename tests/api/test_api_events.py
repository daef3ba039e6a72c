"""The events list (the dashboard's Logs page): filters by team, and never shows another team's."""

import pytest

from tinyforge.accounts.models import Membership, Role
from tinyforge.core.events import record_event
from tinyforge.core.models import Event


def messages(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [event["message"] for event in response.json()["results"]]


def test_it_filters_events_by_team_for_a_member_of_two_teams(client_for, alice, acme, globex):
    Membership.all_teams.create(team=globex.team, user=alice, role=Role.VIEWER)
    Event.all_teams.create(project=globex.project, message="globex line", source="deploy")
    client = client_for(alice)
    assert {"started", "globex line"} <= set(messages(client.get("/api/v1/events/")))
    assert "globex line" not in messages(client.get("/api/v1/events/", {"team": acme.team.pk}))
    assert "started" in messages(client.get("/api/v1/events/", {"team": acme.team.pk}))
    assert "globex line" in messages(client.get("/api/v1/events/", {"team": globex.team.pk}))


def test_it_shows_nothing_for_a_team_the_caller_is_not_in(client_for, alice, acme, globex):
    Event.all_teams.create(project=globex.project, message="globex secret", source="deploy")
    assert messages(client_for(alice).get("/api/v1/events/", {"team": globex.team.pk})) == []


def test_an_exports_lines_are_in_its_runs_log_and_name_both(client_for, alice, acme):
    """An event's subject is one record; a record that belongs to another (an export of a run)
    puts its lines in that one's log too, as the export's links said before subjects."""
    record_event(**acme.export.event_links(), message="export packed", source="export")
    record_event(**acme.deployment.event_links(), message="deployment loaded", source="deploy")
    client = client_for(alice)
    line = next(e for e in client.get("/api/v1/events/", {"export": acme.export.pk}).json()["results"])
    assert (line["message"], line["export"], line["run"], line["deployment"]) == (
        "export packed", acme.export.pk, acme.run.pk, None)
    in_run_log = messages(client.get("/api/v1/events/", {"run": acme.run.pk}))
    assert "export packed" in in_run_log and "started" in in_run_log and "deployment loaded" not in in_run_log
    assert "export packed" in messages(client.get(f"/api/v1/runs/{acme.run.pk}/events/"))
    assert "export packed" in messages(client.get("/api/v1/events/", {"kind": "run"}))
    assert messages(client.get("/api/v1/events/", {"kind": "deployment"})) == ["deployment loaded"]
    assert messages(client.get("/api/v1/events/", {"run": acme.run.pk + 1000})) == []


def test_deleting_a_record_deletes_the_lines_about_it(acme):
    record_event(**acme.export.event_links(), message="export packed", source="export")
    acme.export.delete()
    assert not Event.all_teams.filter(message="export packed").exists()
    assert Event.all_teams.filter(pk=acme.event.pk).exists()  # the run's own line stays


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_each_events_links_into_its_subject(acme):
    """Events written when they held foreign keys to the apps' tables keep what they concern."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("core", "0002_initial")])
    old = executor.loader.project_state([("core", "0002_initial")]).apps.get_model("core", "Event")._default_manager
    assert old.get(pk=acme.event.pk).run_id == acme.run.pk  # and back, for a rollback
    made = {name: old.create(project_id=acme.project.pk, message=name, **links).pk for name, links in {
        "run": {"run_id": acme.run.pk, "attempt": 2},
        "ingest": {"dataset_version_id": acme.version.pk},
        "deploy": {"deployment_id": acme.deployment.pk},
        "export": {"export_id": acme.export.pk, "run_id": acme.run.pk},
        "project": {},
    }.items()}
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    got = {event.message: (event.subject, event.parent, event.attempt)
           for event in Event.all_teams.filter(pk__in=made.values())}
    assert got == {"run": (acme.run, None, 2), "ingest": (acme.version, None, None),
                   "deploy": (acme.deployment, None, None), "export": (acme.export, acme.run, None),
                   "project": (None, None, None)}
    assert Event.all_teams.get(pk=acme.event.pk).subject == acme.run
