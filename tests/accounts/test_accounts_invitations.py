"""Invitations are bound to their e-mail address; an open link is a separate kind an admin makes
knowingly, with an expiry and a use limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from personas import PASSWORD, assert_error, make_user
from tinyforge.accounts.models import Invitation, Membership, VerifiedEmail


def invite(client, team, **fields) -> str:
    response = client.post("/api/v1/invitations/", {"team": team.pk, "role": "member", **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["token"]


def accept(client, token, **fields):
    return client.post("/api/v1/invitations/accept/", {"token": token, **fields}, format="json")


def members(team) -> set[str]:
    return set(Membership.all_teams.filter(team=team).values_list("user__username", flat=True))


def test_a_signed_in_user_with_another_address_cannot_accept(client_for, alice, charlie, acme, globex):
    # The attack of issue 15: charlie (charlie@example.com) joined with an invitation sent to eve.
    token = invite(client_for(alice), acme.team, email="eve@example.com")
    response = accept(client_for(charlie), token)
    assert_error(response, 403, "permission_denied")
    assert "another e-mail address" in response.json()["error"]["message"]
    assert "charlie" not in members(acme.team)
    assert Invitation.all_teams.get(token_hash=Invitation.hash_secret(token)).uses == 0  # still usable by eve


def test_the_invited_address_must_be_verified_not_just_typed_in(client_for, alice, acme, globex):
    token = invite(client_for(alice), acme.team, email="eve@example.com")
    claimed = make_user("mallory")
    claimed.email = "EVE@example.com"  # set by someone, never shown to be theirs
    claimed.save()
    assert_error(accept(client_for(claimed), token), 403)
    VerifiedEmail.objects.create(user=claimed, email="eve@example.com", how="invitation")
    assert accept(client_for(claimed), token).status_code == 200
    assert "mallory" in members(acme.team)


def test_a_new_account_gets_the_invited_address_verified_and_no_other(client_for, alice, acme):
    token = invite(client_for(alice), acme.team, email="eve@example.com")
    other = accept(APIClient(), token, username="eve", password=PASSWORD, email="mallory@example.com")
    assert "email" in assert_error(other, 400)["fields"]
    newcomer = APIClient()
    assert accept(newcomer, token, username="eve", password=PASSWORD).status_code == 200
    me = newcomer.get("/api/v1/auth/me/").json()
    assert me["email"] == "eve@example.com" and me["teams"][0]["role"] == "member"
    eve = Membership.all_teams.get(team=acme.team, user__username="eve").user
    assert VerifiedEmail.holds(eve, "eve@example.com")
    # ...so eve can take the next invitation to her address while signed in.
    second = make_user("zed")
    from tinyforge.accounts.models import Team

    other_team = Team.all_teams.create(name="Other", slug="other")
    Membership.all_teams.create(team=other_team, user=second, role="owner")
    assert accept(newcomer, invite(client_for(second), other_team, email="eve@example.com")).status_code == 200


def test_an_invitation_needs_an_address_unless_it_is_an_open_link(client_for, alice, acme):
    client = client_for(alice)
    response = client.post("/api/v1/invitations/", {"team": acme.team.pk, "role": "member"}, format="json")
    assert "email" in assert_error(response, 400)["fields"]
    response = client.post("/api/v1/invitations/", {"team": acme.team.pk, "kind": "link"}, format="json")
    assert "max_uses" in assert_error(response, 400)["fields"]
    response = client.post("/api/v1/invitations/", {"team": acme.team.pk, "kind": "link", "max_uses": 2,
                                                    "email": "eve@example.com"}, format="json")
    assert "email" in assert_error(response, 400)["fields"]
    response = client.post("/api/v1/invitations/", {"team": acme.team.pk, "email": "eve@example.com",
                                                    "max_uses": 5}, format="json")
    assert "max_uses" in assert_error(response, 400)["fields"]


def test_an_open_link_admits_anyone_up_to_its_use_limit_until_it_expires(client_for, alice, charlie, acme, globex):
    token = invite(client_for(alice), acme.team, kind="link", max_uses=2, expires_in_days=1)
    preview = APIClient().get("/api/v1/invitations/preview/", {"token": token}).json()
    assert preview["kind"] == "link" and preview["email"] == ""
    assert accept(client_for(charlie), token).status_code == 200
    assert accept(APIClient(), token, username="dora", password=PASSWORD).status_code == 200
    third = accept(APIClient(), token, username="finn", password=PASSWORD)
    assert "token" in assert_error(third, 400)["fields"]
    assert members(acme.team) >= {"charlie", "dora"} and "finn" not in members(acme.team)
    listed = client_for(alice).get("/api/v1/invitations/", {"team": acme.team.pk}).json()["results"]
    assert any(i["kind"] == "link" and i["uses"] == 2 and i["max_uses"] == 2 for i in listed)

    expired = invite(client_for(alice), acme.team, kind="link", max_uses=5)
    Invitation.all_teams.filter(token_hash=Invitation.hash_secret(expired)).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    assert "token" in assert_error(accept(APIClient(), expired, username="gus", password=PASSWORD), 400)["fields"]


@pytest.mark.parametrize("days", [0, 31, 10**30])
def test_an_open_links_expiry_is_bounded(client_for, alice, acme, days):
    response = client_for(alice).post("/api/v1/invitations/", {"team": acme.team.pk, "kind": "link", "max_uses": 2,
                                                               "expires_in_days": days}, format="json")
    assert "expires_in_days" in assert_error(response, 400)["fields"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_old_invitations_meaning():
    """Before kinds, an invitation without an address was a one-use open link."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0001_initial")])
    old = executor.loader.project_state([("accounts", "0001_initial")]).apps
    team = old.get_model("accounts", "Team")._default_manager.create(name="Old", slug="old")
    rows = old.get_model("accounts", "Invitation")._default_manager
    later = timezone.now() + timedelta(days=1)
    rows.create(team=team, email="", token_hash="open", expires_at=later)
    rows.create(team=team, email="eve@example.com", token_hash="bound", expires_at=later)
    rows.create(team=team, email="", token_hash="used", expires_at=later, accepted_at=timezone.now())
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    got = {i.token_hash: (i.kind, i.max_uses, i.uses) for i in Invitation.all_teams.filter(team__slug="old")}
    assert got == {"open": ("link", 1, 0), "bound": ("address", 1, 0), "used": ("link", 1, 1)}
