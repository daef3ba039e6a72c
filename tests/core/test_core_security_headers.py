"""Security headers on every response of the web process: the dashboard's index page and its
files (which WhiteNoise answers before most middleware runs), client routes, the REST API, its
docs, and the answers middleware gives before any view (413)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client


@pytest.fixture
def dashboard_build(tmp_path, settings):
    """A built dashboard as Vite lays it out, served the way `make demo` serves it."""
    (tmp_path / "index.html").write_text('<!doctype html><title>TinyForge</title><script type="module" '
                                         'src="/assets/index-1a2b.js"></script><div id="root"></div>')
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "index-1a2b.js").write_text("console.log('dashboard')")
    settings.FRONTEND_DIR = tmp_path
    settings.WHITENOISE_ROOT = tmp_path
    return Client()  # a new client loads the middleware, WhiteNoise with this root included


def assert_secure(response, policy: str) -> None:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Content-Security-Policy"] == policy
    assert "frame-ancestors 'none'" in policy
    assert "camera=()" in response.headers["Permissions-Policy"]


@pytest.mark.parametrize("path, status", [("/", 200), ("/index.html", 302), ("/assets/index-1a2b.js", 200),
                                          ("/projects/7/runs/42", 200)])
def test_it_sets_the_headers_on_the_dashboard_and_its_files(dashboard_build, path, status):
    response = dashboard_build.get(path)
    assert response.status_code == status  # WhiteNoise redirects /index.html to /
    assert_secure(response, settings.DASHBOARD_CSP)


@pytest.mark.django_db
def test_it_sets_the_headers_on_api_answers_and_early_refusals(dashboard_build):
    assert_secure(dashboard_build.get("/api/v1/health/"), settings.API_CSP)
    assert_secure(dashboard_build.get("/api/v1/no-such-route/"), settings.API_CSP)
    refused = dashboard_build.post("/api/v1/auth/login/", data=b"{}", content_type="application/json",
                                   CONTENT_LENGTH=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))
    assert refused.status_code == 413
    assert_secure(refused, settings.API_CSP)


def test_the_dashboard_policy_allows_no_inline_script_and_no_other_origin():
    directives = dict(d.strip().split(" ", 1) for d in settings.DASHBOARD_CSP.split(";"))
    assert directives["default-src"] == directives["script-src"] == directives["connect-src"] == "'self'"
    assert "'unsafe-inline'" not in settings.DASHBOARD_CSP and "'unsafe-eval'" not in settings.DASHBOARD_CSP


def test_the_api_docs_page_runs_no_inline_script(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert "script-src 'self' https://cdn.jsdelivr.net;" in page.headers["Content-Security-Policy"]
    # Every script has a src: the swagger start-up script is served from this origin.
    scripts = re.findall(r"<script([^>]*)>", page.content.decode())
    assert scripts and all("src=" in attributes for attributes in scripts), scripts
    start_up = client.get("/api/docs/?script=")
    assert start_up.status_code == 200 and "SwaggerUIBundle" in start_up.content.decode()
