import pytest
from rest_framework.test import APIClient

from personas import PASSWORD, assert_error


@pytest.fixture
def browser():
    """A client that enforces CSRF like a browser session does."""
    return APIClient(enforce_csrf_checks=True)


def csrf_token(client) -> str:
    response = client.get("/api/v1/auth/csrf/")
    assert response.status_code == 200
    assert response.json()["csrf_token"]
    return client.cookies["csrftoken"].value


def test_it_refuses_sign_in_without_the_csrf_token(browser, alice):
    response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD}, format="json")
    assert_error(response, 403, "csrf_failed")


def test_it_signs_in_by_user_name_with_the_csrf_token(browser, alice, acme):
    token = csrf_token(browser)
    response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD}, format="json",
                            HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    assert response.json()["teams"] == [{"id": acme.team.pk, "name": "Acme", "slug": "acme", "role": "owner"}]
    assert browser.get("/api/v1/auth/me/").json()["username"] == "alice"


def test_it_signs_in_by_email(browser, alice):
    token = csrf_token(browser)
    response = browser.post("/api/v1/auth/login/", {"username": "ALICE@example.com", "password": PASSWORD},
                            format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content


def test_it_refuses_session_writes_without_the_csrf_token_and_accepts_them_with_it(browser, alice, acme):
    token = csrf_token(browser)
    browser.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD}, format="json",
                 HTTP_X_CSRFTOKEN=token)
    body = {"team": acme.team.pk, "name": "new project"}
    assert_error(browser.post("/api/v1/projects/", body, format="json"), 403, "csrf_failed")
    token = browser.cookies["csrftoken"].value  # rotated at sign-in
    response = browser.post("/api/v1/projects/", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


def test_it_says_who_is_not_signed_in(browser):
    assert_error(browser.get("/api/v1/auth/me/"), 401, "not_authenticated")


def test_it_rejects_a_wrong_password_with_the_error_body(browser, alice):
    token = csrf_token(browser)
    response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": "nope"}, format="json",
                            HTTP_X_CSRFTOKEN=token)
    assert_error(response, 400, "invalid_credentials")


def test_it_signs_out(browser, alice):
    token = csrf_token(browser)
    browser.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD}, format="json",
                 HTTP_X_CSRFTOKEN=token)
    token = browser.cookies["csrftoken"].value
    assert browser.post("/api/v1/auth/logout/", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert_error(browser.get("/api/v1/auth/me/"), 401)


def test_it_locks_sign_in_after_repeated_failures(browser, alice, settings):
    token = csrf_token(browser)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": "wrong"}, format="json",
                                HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 400
    response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": "wrong"}, format="json",
                            HTTP_X_CSRFTOKEN=token)
    assert_error(response, 429, "locked_out")
    # Locked: even the right password is refused until the cool-off ends.
    response = browser.post("/api/v1/auth/login/", {"username": "alice", "password": PASSWORD}, format="json",
                            HTTP_X_CSRFTOKEN=token)
    error = assert_error(response, 429, "locked_out")
    assert "locked" in error["message"]
    assert int(response["Retry-After"]) > 0
