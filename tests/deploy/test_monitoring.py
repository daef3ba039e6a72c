"""The monitoring that ships with the install: the compose profile `monitoring` (Prometheus and
Grafana), the Kubernetes ServiceMonitors and dashboard ConfigMaps, and the Grafana dashboards,
whose every PromQL query must name metrics the services really export (checked against the live
/metrics of the inference service and of the web process)."""

from __future__ import annotations

import json
import re

import httpx
import kubernetes_validate
import pytest
import yaml
from install_files import REPO, compose_file

DASHBOARDS = sorted((REPO / "monitoring" / "grafana" / "dashboards").glob("*.json"))
K8S = REPO / "k8s"
MONITORING = K8S / "monitoring"
KUBERNETES_VERSION = "1.30.0"
PINNED = r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}"


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def queries():
    """(dashboard, panel title, expr) of every query in the shipped dashboards."""
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield path.name, panel["title"], target["expr"]


# ---------------------------------------------------------------------------------------------
# compose


def test_the_monitoring_profile_adds_pinned_prometheus_and_grafana_only_on_request():
    services = compose_file()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        assert re.fullmatch(PINNED, services[name]["image"]), services[name]["image"]
    assert all("profiles" not in s for n, s in services.items() if n not in ("prometheus", "grafana"))
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert all(port.startswith("127.0.0.1:") for port in services["grafana"]["ports"])  # this machine only
    assert "ports" not in services["prometheus"]


def test_prometheus_scrapes_web_and_inference_with_the_metrics_token():
    compose = compose_file()
    services, configs = compose["services"], compose["configs"]
    mounted = {c["target"]: REPO / configs[c["source"]]["file"] for c in services["prometheus"]["configs"]}
    config = yaml.safe_load(mounted["/etc/prometheus/prometheus.yml"].read_text())
    assert compose["secrets"]["tinyforge_metrics_token"]["environment"] == "TINYFORGE_METRICS_TOKEN"
    assert "tinyforge_metrics_token" in services["prometheus"]["secrets"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {}
    for job in jobs.values():
        assert job["authorization"]["credentials_file"] == "/run/secrets/tinyforge_metrics_token"
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert port in [str(p) for p in services[host]["expose"]], target
            targets[host] = job["metrics_path"]
    assert targets == {"web": "/metrics", "inference": "/metrics"}


def test_grafana_is_provisioned_with_prometheus_and_every_dashboard():
    compose = compose_file()
    grafana, configs = compose["services"]["grafana"], compose["configs"]
    mounted = {c["target"]: REPO / configs[c["source"]]["file"] for c in grafana["configs"]}
    for path in mounted.values():
        assert path.is_file(), path
    datasource = yaml.safe_load(mounted["/etc/grafana/provisioning/datasources/prometheus.yml"].read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(mounted["/etc/grafana/provisioning/dashboards/tinyforge.yml"].read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert {p.name for t, p in mounted.items() if t.startswith(folder + "/")} == {p.name for p in DASHBOARDS}
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(folder + "/")


# ---------------------------------------------------------------------------------------------
# Kubernetes


def k8s_services():
    found = []
    for path in [*K8S.glob("*.yaml"), *MONITORING.glob("*.yaml")]:
        found += [d for d in documents(path) if d.get("kind") == "Service"]
    return found


def test_the_monitoring_kustomization_lists_every_manifest_in_its_folder():
    listed = set(yaml.safe_load((MONITORING / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("name", ["inference-metrics-service.yaml", "grafana-dashboards.yaml"])
def test_the_core_resources_validate_against_the_kubernetes_schema(name):
    for document in documents(MONITORING / name):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_each_servicemonitor_selects_a_service_and_a_port_it_has():
    monitors = documents(MONITORING / "servicemonitors.yaml")
    assert {m["metadata"]["name"] for m in monitors} == {"tinyforge-web", "tinyforge-inference"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matches = [s for s in k8s_services() if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert len(matches) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in matches])
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    web = next(m for m in monitors if m["metadata"]["name"] == "tinyforge-web")
    credentials = web["spec"]["endpoints"][0]["authorization"]["credentials"]
    secret = documents(K8S / "secret.yaml")[0]
    assert credentials["name"] == secret["metadata"]["name"] and credentials["key"] in secret["stringData"]


def test_the_inference_metrics_service_reaches_the_pods_internal_metrics_listener():
    service = documents(MONITORING / "inference-metrics-service.yaml")[0]
    deployment = next(d for d in documents(K8S / "inference.yaml") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    port = next(p for p in container["ports"] if p["name"] == service["spec"]["ports"][0]["targetPort"])
    address = next(e["value"] for e in container["env"] if e["name"] == "TINYFORGE_METRICS_ADDRESS")
    assert address.endswith(f":{port['containerPort']}")
    public = next(d for d in documents(K8S / "inference.yaml") if d["kind"] == "Service")
    assert port["name"] not in {p["targetPort"] for p in public["spec"]["ports"]}  # never behind the Ingress


def test_the_dashboard_configmaps_hold_the_dashboard_files_unchanged():
    maps = documents(MONITORING / "grafana-dashboards.yaml")
    shipped = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped.update(config_map["data"])
    assert shipped == {p.name: p.read_text() for p in DASHBOARDS}, "regenerate k8s/monitoring/grafana-dashboards.yaml"


# ---------------------------------------------------------------------------------------------
# dashboards: every query names metrics the services export


def metric_names(expr: str) -> set[str]:
    promql_parser = pytest.importorskip("promql_parser", reason="promql-parser is not installed: pip install -e "
                                                                 "'backend[dev]' (make venv)")

    # Grafana's own variables are not PromQL: give them values Prometheus would see.
    expr = expr.replace("$__rate_interval", "5m").replace("$model", ".*")
    names: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
            return
        for attribute in ("args", "expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attribute, None)
            for item in child if isinstance(child, list) else [child]:
                if item is not None and not isinstance(item, (str, int, float)):
                    walk(item)

    walk(promql_parser.parse(expr))
    return names


def exported_names(text: str) -> set[str]:
    """The series names a /metrics page can carry, from its families and their types (a labelled
    family with no children yet still says what its series will be called)."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                "gaugehistogram": ["_bucket", "_gcount", "_gsum"], "summary": ["_count", "_sum", ""],
                "gauge": [""], "untyped": [""], "info": ["_info"], "stateset": [""]}
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_dashboard_panel_has_a_parsable_query():
    assert len(DASHBOARDS) == 2
    for dashboard, title, expr in queries():
        assert metric_names(expr), (dashboard, title, expr)
    for path in DASHBOARDS:
        data = json.loads(path.read_text())
        assert len({p["id"] for p in data["panels"]}) == len(data["panels"]), path.name


def test_the_name_check_catches_a_misspelt_metric():
    assert metric_names("sum(rate(tinyforge_serving_request_total[5m]))") == {"tinyforge_serving_request_total"}
    assert "tinyforge_serving_request_total" not in exported_names("# TYPE tinyforge_serving_requests counter\n")


@pytest.mark.django_db(transaction=True)
def test_every_query_names_a_metric_that_the_live_services_export(tiny_model_dir, settings):
    from rest_framework.test import APIClient

    from serving.conftest import running_server
    from tinyforge.serving.app import ServerSettings
    from tinyforge.serving.auth import APIKeyAuthenticator
    from tinyforge.serving.registry import FolderRegistry

    token = "dashboards-metrics-token"
    settings.METRICS_TOKEN = token
    web = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert web.status_code == 200
    live = exported_names(web.content.decode())
    registry = FolderRegistry({"tiny": tiny_model_dir})
    with running_server(registry, APIKeyAuthenticator("key-0123456789"), ServerSettings(metrics_token=token)) as server:
        answer = httpx.post(f"{server.base_url}/v1/completions", headers={"Authorization": "Bearer key-0123456789"},
                            json={"model": "tiny", "prompt": "The capital of Zorbland", "max_tokens": 4}, timeout=120)
        assert answer.status_code == 200
        page = httpx.get(f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200
        live |= exported_names(page.text)
    missing = [(dashboard, title, sorted(metric_names(expr) - live)) for dashboard, title, expr in queries()
               if metric_names(expr) - live]
    assert not missing, missing
