"""k8s/: every manifest valid against the Kubernetes schemas (kubernetes-validate, offline,
strict), and the references between them (names, labels, ports, probes) hold together."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from install_files import REPO, compose_file

K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.37.0"


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def resources() -> list[dict]:
    documents = []
    for name in kustomization()["resources"]:
        documents += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return documents


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def test_kustomization_lists_every_manifest_in_the_folder():
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("name", sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"))
def test_each_manifest_is_valid_against_the_kubernetes_schema(name):
    documents = [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    assert documents
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {document['kind']}/{document['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_validator_rejects_a_broken_manifest():
    deployment = yaml.safe_load((K8S / "web.yaml").read_text().split("\n---\n")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_platform_runs_web_workers_scheduler_and_inference_with_migrations_first():
    deployments = by_kind("Deployment")
    assert set(deployments) == {"tinyforge-web", "tinyforge-worker", "tinyforge-scheduler", "tinyforge-evaluator",
                                "tinyforge-inference"}
    (job,) = by_kind("Job").values()
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "manage.py migrate --noinput && python manage.py createadmin" in command
    for deployment in deployments.values():
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert "migrate --check" in " ".join(init["command"])


def test_the_scheduler_runs_composes_command_once_on_the_worker_image():
    """The periodic reconcilers on a pod of their own (compose's `scheduler`): training workers
    run the image's command, which leaves the control queue to it."""
    deployments = by_kind("Deployment")
    scheduler = deployments["tinyforge-scheduler"]
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert container["command"] == compose_file()["services"]["scheduler"]["command"]
    assert container["image"] == "tinyforge/worker"
    assert scheduler["spec"]["replicas"] == 1
    (worker,) = deployments["tinyforge-worker"]["spec"]["template"]["spec"]["containers"]
    assert "command" not in worker and "args" not in worker
    (evaluator,) = deployments["tinyforge-evaluator"]["spec"]["template"]["spec"]["containers"]
    assert evaluator["command"] == compose_file()["services"]["evaluator"]["command"]
    assert evaluator["image"] == "tinyforge/worker"


def test_services_select_their_deployments_pods_and_ports():
    deployments = by_kind("Deployment")
    services = by_kind("Service")
    assert set(services) == {"tinyforge-web", "tinyforge-inference"}
    for name, service in services.items():
        pod = deployments[name]["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert deployments[name]["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        port_names = {port["name"] for container in pod["spec"]["containers"] for port in container.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, name


def test_probes_use_health_and_readiness_endpoints():
    deployments = by_kind("Deployment")
    (inference,) = deployments["tinyforge-inference"]["spec"]["template"]["spec"]["containers"]
    assert inference["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert inference["livenessProbe"]["httpGet"]["path"] == "/health"
    (web,) = deployments["tinyforge-web"]["spec"]["template"]["spec"]["containers"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/"
    assert web["livenessProbe"]["httpGet"]["path"] == "/api/v1/health/"
    # Django checks Host against ALLOWED_HOSTS; the kubelet would send the pod's IP.
    probe_host = {header["name"]: header["value"] for header in web["readinessProbe"]["httpGet"]["httpHeaders"]}["Host"]
    allowed = by_kind("ConfigMap")["tinyforge-config"]["data"]["ALLOWED_HOSTS"].split(",")
    assert probe_host in allowed


def test_every_pod_has_limits_runs_unprivileged_and_mounts_the_data_claim():
    claims = set(by_kind("PersistentVolumeClaim"))
    assert by_kind("PersistentVolumeClaim")["tinyforge-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    configmaps, secrets = set(by_kind("ConfigMap")), set(by_kind("Secret"))
    pods = [doc["spec"]["template"]["spec"] for doc in resources() if doc["kind"] in {"Deployment", "Job"}]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), container["name"]
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            for source in container["envFrom"]:
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
        volumes = {volume["persistentVolumeClaim"]["claimName"] for volume in pod["volumes"]}
        assert volumes <= claims


def test_the_web_app_reaches_the_inference_service():
    url = by_kind("ConfigMap")["tinyforge-config"]["data"]["TINYFORGE_INFERENCE_URL"]
    service = by_kind("Service")["tinyforge-inference"]
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def test_autoscalers_target_worker_and_inference():
    deployments = by_kind("Deployment")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind("HorizontalPodAutoscaler").values()}
    assert targets == {"tinyforge-worker", "tinyforge-inference"}
    assert targets <= set(deployments)


def test_the_ingress_routes_like_nginx_in_compose():
    (ingress,) = by_kind("Ingress").values()
    routes = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes == {
        "/v1/files": "tinyforge-web",
        "/v1/fine_tuning": "tinyforge-web",
        "/v1": "tinyforge-inference",
        "/": "tinyforge-web",
    }
    upload_limit = by_kind("ConfigMap")["tinyforge-config"]["data"]["TINYFORGE_MAX_UPLOAD_BYTES"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == upload_limit
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_kustomize_images_cover_every_image_used():
    names = {image["name"] for image in kustomization()["images"]}
    used = {
        container["image"]
        for doc in resources()
        if doc["kind"] in {"Deployment", "Job"}
        for container in doc["spec"]["template"]["spec"].get("initContainers", []) + doc["spec"]["template"]["spec"]["containers"]
    }
    assert used == names
