from datetime import timedelta

from django.db import connection
from django.utils import timezone

from personas import assert_error
from tinyforge.accounts.models import ApiToken


def test_it_shows_the_secret_once_and_stores_only_its_hash(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/tokens/", {"name": "ci", "team": acme.team.pk, "scopes": ["read"]},
                                      format="json")
    assert response.status_code == 201, response.content
    secret = response.json()["token"]
    assert secret.startswith("tf_") and response.json()["prefix"] == secret[:12]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        rows = cursor.fetchall()
    assert rows and not any(secret in str(value) for row in rows for value in row)
    listed = client_for(alice).get("/api/v1/tokens/").json()["results"]
    assert all("token" not in row for row in listed)


def test_it_authenticates_a_bearer_token_and_records_its_use(token_client, alice, acme):
    client, token = token_client(alice, acme.team, ["read"])
    response = client.get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [acme.project.pk]
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_it_refuses_a_revoked_token(token_client, alice, acme):
    client, token = token_client(alice, acme.team, ["read"], revoked_at=timezone.now())
    assert_error(client.get("/api/v1/projects/"), 401, "authentication_failed")


def test_it_refuses_an_expired_token(token_client, alice, acme):
    client, token = token_client(alice, acme.team, ["read"], expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/projects/")
    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_made_up_token(client_for, db):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Bearer tf_not-a-real-token")
    assert_error(client.get("/api/v1/projects/"), 401)


def test_it_refuses_writes_with_a_read_token(token_client, alice, acme):
    client, _ = token_client(alice, acme.team, ["read"])
    assert_error(client.post("/api/v1/projects/", {"team": acme.team.pk, "name": "x"}, format="json"), 403)


def test_it_allows_writes_and_reads_with_a_write_token(token_client, alice, acme):
    client, _ = token_client(alice, acme.team, ["write"])
    assert client.post("/api/v1/projects/", {"team": acme.team.pk, "name": "x"}, format="json").status_code == 201
    assert client.get("/api/v1/datasets/").status_code == 200


def test_it_refuses_reading_datasets_with_an_inference_token(token_client, alice, acme):
    client, _ = token_client(alice, acme.team, ["inference"])
    assert_error(client.get("/api/v1/datasets/"), 403, "permission_denied")
    assert_error(client.get(f"/api/v1/datasets/{acme.dataset.pk}/"), 403)


def test_it_hides_another_team_from_a_token_limited_to_one(token_client, alice, acme, globex, charlie):
    # charlie belongs to both teams, but his token is limited to Globex.
    from tinyforge.accounts.models import Membership

    Membership.all_teams.create(team=acme.team, user=charlie, role="member")
    client, _ = token_client(charlie, globex.team, ["read"])
    assert_error(client.get(f"/api/v1/projects/{acme.project.pk}/"), 404, "not_found")
    assert_error(client.get(f"/api/v1/runs/{acme.run.pk}/"), 404)


def test_it_refuses_token_management_with_a_token(token_client, alice, acme):
    client, _ = token_client(alice, acme.team, ["write"])
    assert_error(client.post("/api/v1/tokens/", {"name": "x", "team": acme.team.pk, "scopes": ["read"]}, format="json"), 403)


def test_it_revokes_a_token(client_for, token_client, alice, acme):
    client, token = token_client(alice, acme.team, ["read"])
    assert client_for(alice).delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert_error(client.get("/api/v1/projects/"), 401)


def test_it_lets_a_member_revoke_only_their_own_tokens(client_for, bob, acme):
    assert_error(client_for(bob).delete(f"/api/v1/tokens/{acme.token.pk}/"), 404)  # alice's token: not bob's to see


def test_it_refuses_a_write_token_for_a_viewer(client_for, vic, acme):
    response = client_for(vic).post("/api/v1/tokens/", {"name": "x", "team": acme.team.pk, "scopes": ["write"]},
                                    format="json")
    assert "scopes" in assert_error(response, 400)["fields"]
