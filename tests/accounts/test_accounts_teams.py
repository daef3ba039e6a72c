from personas import PASSWORD, assert_error
from tinyforge.accounts.models import Membership, Team
from tinyforge.core.models import AuditEvent


def test_it_creates_a_team_with_me_as_owner(client_for, charlie):
    response = client_for(charlie).post("/api/v1/teams/", {"name": "Initech"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "owner" and response.json()["slug"] == "initech"


def test_it_lets_a_viewer_write_nothing(client_for, vic, acme):
    client = client_for(vic)
    assert client.get(f"/api/v1/projects/{acme.project.pk}/").status_code == 200
    assert_error(client.post("/api/v1/projects/", {"team": acme.team.pk, "name": "x"}, format="json"), 403)
    assert_error(client.patch(f"/api/v1/projects/{acme.project.pk}/", {"name": "y"}, format="json"), 403)
    assert_error(client.delete(f"/api/v1/datasets/{acme.dataset.pk}/"), 403)
    assert_error(client.post(f"/api/v1/runs/{acme.run.pk}/cancel/"), 403)


def test_it_lets_a_member_write_but_not_manage_members(client_for, bob, vic, acme):
    client = client_for(bob)
    assert client.patch(f"/api/v1/projects/{acme.project.pk}/", {"name": "renamed"}, format="json").status_code == 200
    vic_membership = Membership.all_teams.get(team=acme.team, user=vic)
    assert_error(client.patch(f"/api/v1/memberships/{vic_membership.pk}/", {"role": "admin"}, format="json"), 403)
    assert_error(client.delete(f"/api/v1/memberships/{vic_membership.pk}/"), 403)
    assert_error(client.post("/api/v1/invitations/", {"team": acme.team.pk, "role": "member"}, format="json"), 403)
    assert_error(client.post("/api/v1/memberships/", {"team": acme.team.pk, "username": "zed", "password": PASSWORD},
                             format="json"), 403)


def test_it_lets_an_owner_add_a_member_directly(client_for, alice, acme):
    response = client_for(alice).post(
        "/api/v1/memberships/", {"team": acme.team.pk, "username": "dana", "email": "dana@example.com",
                                 "password": PASSWORD, "role": "viewer"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "viewer"
    signed_in = client_for().post("/api/v1/auth/login/", {"username": "dana", "password": PASSWORD}, format="json")
    assert signed_in.status_code == 200, signed_in.content


def test_it_lets_only_owners_delete_a_team(client_for, alice, bob, acme):
    Membership.all_teams.filter(team=acme.team, user=bob).update(role="admin")
    assert_error(client_for(bob).delete(f"/api/v1/teams/{acme.team.pk}/"), 403)
    assert client_for(alice).delete(f"/api/v1/teams/{acme.team.pk}/").status_code == 204
    assert not Team.all_teams.filter(pk=acme.team.pk).exists()


def test_it_never_leaves_a_team_without_an_owner(client_for, alice, acme):
    mine = Membership.all_teams.get(team=acme.team, user=alice)
    assert_error(client_for(alice).patch(f"/api/v1/memberships/{mine.pk}/", {"role": "admin"}, format="json"), 409)
    assert_error(client_for(alice).delete(f"/api/v1/memberships/{mine.pk}/"), 409, "conflict")
    assert Membership.all_teams.get(pk=mine.pk).role == "owner"


def test_it_keeps_admins_from_making_owners(client_for, bob, vic, acme):
    Membership.all_teams.filter(team=acme.team, user=bob).update(role="admin")
    vic_membership = Membership.all_teams.get(team=acme.team, user=vic)
    assert_error(client_for(bob).patch(f"/api/v1/memberships/{vic_membership.pk}/", {"role": "owner"}, format="json"), 403)
    response = client_for(bob).patch(f"/api/v1/memberships/{vic_membership.pk}/", {"role": "member"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "member"


def test_it_lets_a_member_leave(client_for, bob, acme):
    mine = Membership.all_teams.get(team=acme.team, user=bob)
    assert client_for(bob).delete(f"/api/v1/memberships/{mine.pk}/").status_code == 204
    assert_error(client_for(bob).get(f"/api/v1/projects/{acme.project.pk}/"), 404)


def test_it_joins_a_team_through_an_invite_link(client_for, alice, acme):
    from rest_framework.test import APIClient

    created = client_for(alice).post("/api/v1/invitations/", {"team": acme.team.pk, "role": "member",
                                                              "email": "eve@example.com"}, format="json")
    assert created.status_code == 201, created.content
    token = created.json()["token"]
    assert created.json()["invite_path"] == f"/invite/{token}"
    newcomer = APIClient()
    preview = newcomer.get("/api/v1/invitations/preview/", {"token": token})
    assert preview.json()["team"] == "Acme"
    joined = newcomer.post("/api/v1/invitations/accept/", {"token": token, "username": "eve", "password": PASSWORD},
                           format="json")
    assert joined.status_code == 200, joined.content
    assert newcomer.get("/api/v1/auth/me/").json()["teams"][0]["role"] == "member"
    again = APIClient().post("/api/v1/invitations/accept/", {"token": token, "username": "eve2", "password": PASSWORD},
                             format="json")
    assert "token" in assert_error(again, 400)["fields"]


def test_it_records_changes_in_the_audit_log(client_for, alice, acme):
    client_for(alice).patch(f"/api/v1/projects/{acme.project.pk}/", {"name": "renamed"}, format="json")
    response = client_for(alice).get("/api/v1/audit-events/", {"action": "updated", "project": acme.project.pk})
    rows = response.json()["results"]
    assert rows and rows[0]["actor"] == "alice" and rows[0]["changes"] == {"name": "renamed"}
    assert AuditEvent.all_teams.filter(team=acme.team, action="updated").count() == 1
