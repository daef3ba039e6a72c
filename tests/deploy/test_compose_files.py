"""docker-compose.yml and docker-compose.gpu.yml: valid Compose files that keep the promises of
docs/self-hosting.md (healthy start order, scalable workers, durable queues, bounded logs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from install_files import REPO, compose_file, dockerfile_stages, stage_chain

COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]
PLATFORM_SERVICES = ["web", "worker", "scheduler", "evaluator", "inference"]


def check_jsonschema(*paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def test_it_validates_against_the_compose_specification_schema():
    result = check_jsonschema(*(REPO / name for name in COMPOSE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path):
    broken = (REPO / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restart_policy: always", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = check_jsonschema(tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "restart_policy" in result.stdout + result.stderr


def compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(
    not compose_plugin_available(), reason="this machine's docker client has no compose plugin"
)
def test_docker_compose_config_accepts_both_files(tmp_path):
    for name in COMPOSE_FILES:
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=compose-config-check\nSECRET_KEY=compose-config-check\n")
    result = subprocess.run(
        ["docker", "compose", *sum((["-f", name] for name in COMPOSE_FILES), []), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "tinyforge-config-check"},
    )
    assert result.returncode == 0, result.stderr


def test_every_service_restarts_and_rotates_its_logs():
    services = compose_file()["services"]
    for name, service in services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name
        assert int(service["logging"]["options"]["max-file"]) >= 2, name


def test_services_start_only_after_what_they_need_is_healthy():
    services = compose_file()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/api/v1/health/" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["inference"]["healthcheck"]["test"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in PLATFORM_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        # Migrations ran, once, before any process that uses the database starts.
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("web", "worker", "scheduler", "evaluator"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_migrate_applies_migrations_then_creates_the_first_admin():
    command = compose_file()["services"]["migrate"]["command"]
    assert command[:2] == ["sh", "-c"]
    assert command[2] == "python manage.py migrate --noinput && python manage.py createadmin"


@pytest.mark.django_db(databases=[])
def test_the_migrate_services_commands_exist():
    from django.core.management import get_commands

    assert {"migrate", "createadmin", "rqworker", "collectstatic"} <= set(get_commands())


def service_command(name: str) -> list[str]:
    """What the service runs: its `command`, else its image's CMD."""
    service = compose_file()["services"][name]
    if "command" in service:
        return service["command"]
    _, stages = dockerfile_stages()
    return next(json.loads(stage.values("CMD")[-1]) for stage in stage_chain(stages, service["build"]["target"])
                if stage.values("CMD"))


@pytest.mark.django_db(databases=[])
def test_every_queue_has_a_worker_and_the_reconcilers_run_apart_from_training():
    from django.conf import settings
    from django.core.management import load_command_class

    from tinyforge.core.worker import CONTROL_QUEUE, EVAL_QUEUE, WORK_QUEUES

    parser = load_command_class("django_rq", "rqworker").create_parser("manage.py", "rqworker")
    services = compose_file()["services"]
    options = {}
    for name in ("worker", "scheduler", "evaluator"):
        command = service_command(name)
        assert command[:3] == ["python", "manage.py", "rqworker"], name
        options[name] = parser.parse_args(command[3:])
    # Training workers never take the periodic jobs: a run of hours would hold them up.
    assert options["worker"].args == list(WORK_QUEUES)
    assert options["scheduler"].args == [CONTROL_QUEUE] and options["scheduler"].with_scheduler is True
    # Evaluations never wait behind training either: a run's gate check starts when it ends.
    assert options["evaluator"].args == [EVAL_QUEUE]
    assert set().union(*(options[name].args for name in options)) == set(settings.RQ_QUEUES)
    for name in ("scheduler", "evaluator"):
        assert services[name]["image"] == services["worker"]["image"]
        assert services[name]["build"] == services["worker"]["build"]


def test_workers_scale_with_the_scale_flag():
    worker = compose_file()["services"]["worker"]
    # A fixed name or a published port would make a second replica fail to start.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_redis_keeps_every_job():
    command = compose_file()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2]))
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--appendonly"] == "yes"
    assert any(volume.endswith(":/data") for volume in compose_file()["services"]["redis"]["volumes"])


def test_state_lives_in_named_volumes():
    compose = compose_file()
    services = compose["services"]
    named = set(compose["volumes"])
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in PLATFORM_SERVICES + ["migrate"]:
        assert "tinyforge-data:/data" in services[name]["volumes"], name
        assert services[name]["environment"]["TINYFORGE_DATA_DIR"] == "/data", name
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in named, f"{source} is not a named volume"


def test_platform_services_read_env_file_and_run_in_production_mode():
    services = compose_file()["services"]
    for name in PLATFORM_SERVICES + ["migrate"]:
        assert services[name]["env_file"] == ".env", name
        environment = services[name]["environment"]
        assert environment["TINYFORGE_ENV"] == "production", name
        assert environment["DATABASE_URL"].startswith("postgres://"), name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name
        # The inference service's compose address and port (its image's CMD and `expose`).
        assert environment["TINYFORGE_INFERENCE_URL"] == "http://inference:8001", name


def test_image_paths_are_fixed_by_compose_whatever_env_says():
    """env_file values override the image's ENV, and .env.example leaves some of these empty
    (meaning "default"): compose's `environment` must set the paths the images use."""
    _, stages = dockerfile_stages()
    image_env = {}
    for stage in reversed(stage_chain(stages, "web")):
        image_env.update(stage.env())
    services = compose_file()["services"]
    for name in PLATFORM_SERVICES + ["migrate"]:
        environment = services[name]["environment"]
        for variable in ("TINYFORGE_DATA_DIR", "TINYFORGE_MODEL_CACHE", "TINYFORGE_STATIC_ROOT", "TINYFORGE_FRONTEND_DIR"):
            assert environment[variable] == image_env[variable], (name, variable)


def test_nginx_and_the_web_app_share_one_upload_limit():
    services = compose_file()["services"]
    assert (
        services["nginx"]["environment"]["TINYFORGE_MAX_UPLOAD_BYTES"]
        == services["web"]["environment"]["TINYFORGE_MAX_UPLOAD_BYTES"]
    )


def test_the_gpu_override_reserves_gpus_for_workers_and_inference():
    override = compose_file("docker-compose.gpu.yml")["services"]
    assert set(override) == {"worker", "inference"}
    for name, service in override.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia", name
        assert device["capabilities"] == ["gpu"], name
        # The CUDA build of the same pinned torch: PyPI's Linux wheel.
        assert service["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple", name
        assert service["image"].endswith("-cuda"), name


def test_every_variable_compose_reads_from_env_is_in_env_example():
    """`docker compose` fills ${VAR} from .env; .env.example must show each one."""
    example = REPO / ".env.example"
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))
    used = set()
    for name in COMPOSE_FILES:
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / name).read_text()))
    missing = sorted(used - documented)
    assert not missing, f".env.example lacks {missing}"
