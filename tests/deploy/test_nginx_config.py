"""nginx/: the one-origin proxy, run in the real nginx binary against upstreams the test starts.

The two upstreams here are small HTTP servers that report which one answered and what they
received: the code under test is the nginx configuration (routing, streaming, limits, headers),
and checking it needs to know which process a request reached. The web app and the inference
service are tested in their own areas.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from install_files import REPO, compose_file, dockerfile_stages, stage_chain, with_defaults

NGINX_DIR = REPO / "nginx"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)"
)

UPLOAD_LIMIT_BYTES = 1024 * 1024


def render_template(text: str, env: dict[str, str], name_filter: str) -> str:
    """Do what the nginx image's 20-envsubst-on-templates.sh does: envsubst with the list of
    defined variables whose names match NGINX_ENVSUBST_FILTER; both $VAR and ${VAR} forms."""
    names = {name for name in env if re.search(name_filter, name)}

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return env[name] if name in names else match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, text)


def compose_nginx_environment() -> dict[str, str]:
    """The nginx container's environment: its image's ENV, then docker-compose.yml's lines."""
    _, stages = dockerfile_stages()
    env = {}
    for stage in reversed(stage_chain(stages, "nginx")):
        env.update(stage.env())
    for name, value in compose_file()["services"]["nginx"]["environment"].items():
        env[name] = with_defaults(value)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Upstream:
    """An HTTP server that answers with JSON naming itself and echoing the request."""

    def __init__(self, name: str):
        self.name = name
        self.release_stream = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.endswith("/stream"):
                    return self._stream()
                payload = json.dumps(
                    {
                        "server": upstream.name,
                        "method": self.command,
                        "path": self.path,
                        "host": self.headers.get("Host"),
                        "forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                        "forwarded_for": self.headers.get("X-Forwarded-For"),
                        "body_bytes": len(body),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Frame-Options", "SAMEORIGIN")
                if upstream.name == "web":  # as Django's SecurityHeadersMiddleware does
                    self.send_header("Content-Security-Policy", settings.API_CSP)
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self):
                # The second event is written only after the client has received the first:
                # a buffering proxy would hold the first back and the test would time out.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'data: {"token": "first"}\n\n')
                self.wfile.flush()
                upstream.release_stream.wait(timeout=30)
                self.wfile.write(b'data: {"token": "second"}\n\ndata: [DONE]\n\n')
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release_stream.set()
        self.server.shutdown()
        self.server.server_close()


def write_nginx_prefix(prefix: Path, env: dict[str, str], port: int) -> Path:
    """Lay out what the nginx image has: a main nginx.conf including conf.d/*.conf, the
    rendered template in conf.d, and our snippets. Returns the main config file."""
    (prefix / "conf.d").mkdir(parents=True)
    shutil.copytree(NGINX_DIR / "snippets", prefix / "snippets")
    template = (NGINX_DIR / "templates" / "default.conf.template").read_text()
    rendered = render_template(template, env, env["NGINX_ENVSUBST_FILTER"])
    # The only change from production: a free port instead of the image's 8080.
    rendered, count = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", rendered)
    assert count == 1
    (prefix / "conf.d" / "default.conf").write_text(rendered)
    temp = prefix / "temp"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include conf.d/*.conf;
}}
"""
    )
    return main


@pytest.fixture(scope="module")
def dashboard_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "index.html").write_text("<!doctype html><title>TinyForgeAI</title><div id=root></div>")
    (root / "assets").mkdir()
    (root / "assets" / "index-3f9a1c.js").write_text("console.log('dashboard')")
    return root


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, dashboard_dir):
    web, inference = Upstream("web"), Upstream("inference")
    env = compose_nginx_environment()
    env.update(
        TINYFORGE_WEB_UPSTREAM=web.address,
        TINYFORGE_INFERENCE_UPSTREAM=inference.address,
        TINYFORGE_DASHBOARD_DIR=str(dashboard_dir),
        TINYFORGE_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT_BYTES),
    )
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    main = write_nginx_prefix(prefix, env, port)
    check = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/nginx-health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client, web, inference
    finally:
        process.terminate()
        process.wait(timeout=10)
        web.close()
        inference.close()


def test_it_passes_nginx_t_with_the_compose_environment(tmp_path, dashboard_dir):
    env = compose_nginx_environment()
    env["TINYFORGE_DASHBOARD_DIR"] = str(dashboard_dir)
    main = write_nginx_prefix(tmp_path, env, free_port())
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_it_refuses_to_start_when_a_variable_is_missing(tmp_path, dashboard_dir):
    env = compose_nginx_environment()
    env["TINYFORGE_DASHBOARD_DIR"] = str(dashboard_dir)
    del env["TINYFORGE_MAX_UPLOAD_BYTES"]
    main = write_nginx_prefix(tmp_path, env, free_port())
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "client_max_body_size" in result.stderr


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("GET", "/api/v1/auth/me/", "web"),
        ("GET", "/api/schema/", "web"),
        ("GET", "/admin/login/", "web"),
        ("GET", "/static/admin/css/base.css", "web"),
        ("GET", "/django-rq/queues/", "web"),
        ("POST", "/v1/files", "web"),
        ("GET", "/v1/files/file-1/content", "web"),
        ("POST", "/v1/fine_tuning/jobs", "web"),
        ("GET", "/v1/fine_tuning/jobs/ftjob-1/events?limit=5", "web"),
        ("GET", "/v1/models", "inference"),
        ("POST", "/v1/chat/completions", "inference"),
        ("POST", "/v1/completions", "inference"),
    ],
)
def test_it_routes_each_path_to_its_process(proxy, method, path, expected):
    client, _, _ = proxy
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 200
    answer = response.json()
    assert answer["server"] == expected
    # The path arrives unchanged, query string included.
    assert answer["path"] == path


def test_it_forwards_the_origin_the_browser_used(proxy):
    client, _, _ = proxy
    answer = client.get("/api/v1/auth/csrf/").json()
    # Django's CSRF origin check compares the Origin header with Host, port included.
    assert answer["host"] == client.base_url.netloc.decode()
    assert answer["forwarded_proto"] == "http"
    assert answer["forwarded_for"] == "127.0.0.1"
    # TLS ended at a load balancer in front: its scheme is passed on, so Django sees https.
    behind_tls = client.get("/api/v1/auth/csrf/", headers={"X-Forwarded-Proto": "https"}).json()
    assert behind_tls["forwarded_proto"] == "https"


def test_it_serves_the_dashboard_with_a_fallback_for_client_routes(proxy):
    client, _, _ = proxy
    for path in ("/", "/projects/7/runs/42", "/playground"):
        response = client.get(path)
        assert response.status_code == 200
        assert "<title>TinyForgeAI</title>" in response.text
        assert response.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in response.headers["content-security-policy"]


def test_it_caches_hashed_assets_and_404s_missing_ones(proxy):
    client, _, _ = proxy
    asset = client.get("/assets/index-3f9a1c.js")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert client.get("/assets/index-gone.js").status_code == 404


@pytest.mark.parametrize("path, policy", [
    ("/", settings.DASHBOARD_CSP), ("/projects/7", settings.DASHBOARD_CSP), ("/assets/index-3f9a1c.js", settings.DASHBOARD_CSP),
    ("/api/v1/auth/me/", settings.API_CSP), ("/v1/models", settings.API_CSP), ("/metrics", settings.API_CSP),
])
def test_it_sets_security_headers_once_on_every_kind_of_response(proxy, path, policy):
    """The dashboard's files get the policy the web app sends when it serves them itself
    (`make demo`), word for word; the inference service's answers the web app's API policy."""
    client, _, _ = proxy
    response = client.get(path)
    assert response.headers.get_list("x-frame-options") == ["DENY"], path
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], path
    assert response.headers.get_list("content-security-policy") == [policy], path
    assert response.headers["referrer-policy"] == "same-origin"
    assert "server" not in response.headers or "nginx/" not in response.headers["server"]


@pytest.mark.parametrize("path", ["/metrics", "/v1/../metrics", "/v1/%2e%2e/metrics", "/v1/..%2fmetrics",
                                  "/v1/models/..%2F..%2Fmetrics", "//metrics", "/metrics?x=1"])
def test_it_never_passes_a_request_for_the_inference_metrics_on(proxy, path):
    """The inference service's /metrics is for Prometheus on the internal network. Whatever the
    spelling, the inference service gets nothing from nginx but paths under /v1/, which it does
    not serve as /metrics."""
    client, _, inference = proxy
    response = client.get(path)
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if answer.get("server") == "inference":
        assert answer["path"].startswith("/v1/"), answer
    if path.startswith("/metrics"):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_it_streams_server_sent_events_without_buffering(proxy):
    client, _, inference = proxy
    inference.release_stream.clear()
    with client.stream("POST", "/v1/chat/stream", json={"stream": True}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        # Reaching this line means the first event crossed nginx before the upstream finished.
        assert first == 'data: {"token": "first"}'
        inference.release_stream.set()
        rest = [line for line in lines if line]
    assert rest == ['data: {"token": "second"}', "data: [DONE]"]


def test_it_refuses_a_body_over_the_upload_limit_with_a_json_error(proxy):
    client, _, _ = proxy
    under = client.post("/api/v1/upload", content=b"x" * UPLOAD_LIMIT_BYTES)
    assert under.status_code == 200
    assert under.json()["body_bytes"] == UPLOAD_LIMIT_BYTES
    over = client.post("/v1/files", content=b"x" * (UPLOAD_LIMIT_BYTES + 1))
    assert over.status_code == 413
    error = over.json()["error"]
    assert error["code"] == "request_too_large"
    assert f"{UPLOAD_LIMIT_BYTES} bytes" in error["message"]
    assert over.headers["x-content-type-options"] == "nosniff"


def test_it_answers_json_503_when_an_upstream_is_down(tmp_path, dashboard_dir):
    env = compose_nginx_environment()
    env.update(
        TINYFORGE_DASHBOARD_DIR=str(dashboard_dir),
        TINYFORGE_WEB_UPSTREAM=f"127.0.0.1:{free_port()}",
        TINYFORGE_INFERENCE_UPSTREAM=f"127.0.0.1:{free_port()}",
    )
    port = free_port()
    main = write_nginx_prefix(tmp_path, env, port)
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"]
    )
    try:
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "service_unavailable"
    finally:
        process.terminate()
        process.wait(timeout=10)
