"""The events list (the dashboard's Logs page): filters by team, and never shows another team's."""

from tinyforge.accounts.models import Membership, Role
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
