"""Settings come from the environment and fail loudly; production passes check --deploy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyforge.core.env import SettingError, env_bool, env_float, env_int, env_str, env_url

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def test_it_reads_typed_values(monkeypatch):
    monkeypatch.setenv("TF_TEST_FLAG", "yes")
    monkeypatch.setenv("TF_TEST_NUMBER", " 42 ")
    assert env_bool("TF_TEST_FLAG", False) is True
    assert env_int("TF_TEST_NUMBER", 1) == 42
    assert env_int("TF_TEST_UNSET", 7) == 7
    monkeypatch.setenv("TF_TEST_SHARE", "0.05")
    assert env_float("TF_TEST_SHARE", 0.02, minimum=0.0, maximum=1.0) == 0.05
    monkeypatch.setenv("TF_TEST_URL", "https://mlflow.example.com:5000/")
    assert env_url("TF_TEST_URL", None) == "https://mlflow.example.com:5000"
    assert env_url("TF_TEST_UNSET", None) is None


@pytest.mark.parametrize("name,value,reader", [
    ("TF_TEST_FLAG", "ture", lambda: env_bool("TF_TEST_FLAG", False)),
    ("TF_TEST_NUMBER", "80a", lambda: env_int("TF_TEST_NUMBER", 1)),
    ("TF_TEST_NUMBER", "0", lambda: env_int("TF_TEST_NUMBER", 1, minimum=1)),
    ("TF_TEST_SHARE", "two percent", lambda: env_float("TF_TEST_SHARE", 0.02)),
    ("TF_TEST_SHARE", "1.5", lambda: env_float("TF_TEST_SHARE", 0.5, maximum=1.0)),
    ("TF_TEST_CHOICE", "prod", lambda: env_str("TF_TEST_CHOICE", "a", choices=("a", "b"))),
    ("TF_TEST_URL", "file:///data/mlruns", lambda: env_url("TF_TEST_URL", None)),
    ("TF_TEST_URL", "mlflow.example.com", lambda: env_url("TF_TEST_URL", None)),
])
def test_it_fails_loudly_on_bad_values(monkeypatch, name, value, reader):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=name):
        reader()


def test_it_reads_secrets_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("TF_TEST_SECRET_FILE", str(secret))
    assert env_str("TF_TEST_SECRET", secret=True) == "s3cret"
    monkeypatch.setenv("TF_TEST_SECRET", "other")
    with pytest.raises(SettingError, match="not both"):
        env_str("TF_TEST_SECRET", secret=True)


def test_it_requires_unset_required_values(monkeypatch):
    monkeypatch.delenv("TF_TEST_REQUIRED", raising=False)
    with pytest.raises(SettingError, match="TF_TEST_REQUIRED is required"):
        env_str("TF_TEST_REQUIRED")


def manage(args, env_overrides, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SECRET_KEY", "DEBUG"))}
    env.update({"TINYFORGE_DATA_DIR": str(tmp_path / "data"), **env_overrides})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BACKEND, env=env, capture_output=True, text=True,
                          timeout=120)


def test_it_passes_check_deploy_in_production(tmp_path):
    result = manage(["check", "--deploy", "--fail-level", "WARNING"], {
        "TINYFORGE_ENV": "production",
        "SECRET_KEY": "k" * 20 + "Zx9!q$wErTy7uIoP#aSdFgHjKl;2zXcVbNm,8.",
        "ALLOWED_HOSTS": "tinyforge.example.com",
    }, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_production_without_a_secret_key(tmp_path):
    result = manage(["check"], {"TINYFORGE_ENV": "production", "ALLOWED_HOSTS": "x.example.com"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_generates_and_keeps_a_demo_secret_key(tmp_path):
    assert manage(["check"], {}, tmp_path).returncode == 0
    key_file = tmp_path / "data" / "secret_key"
    first = key_file.read_text()
    assert len(first) > 50 and oct(key_file.stat().st_mode)[-3:] == "600"
    manage(["check"], {}, tmp_path)
    assert key_file.read_text() == first


def test_the_web_apps_processes_start_without_the_model_libraries(tmp_path):
    """Every Django process (web app, scheduler, each manage.py command) loads every app and URL;
    PyTorch, transformers and llguidance are for the work that runs models, and importing them
    there took a start from 1.5 s to 5.7 s (evaluations imported the serving engine for a
    dataclass)."""
    script = ("import sys\nfrom django.urls import get_resolver\nget_resolver().url_patterns\n"
              "print(sorted(m for m in ('torch', 'transformers', 'llguidance') if m in sys.modules))")
    result = manage(["shell", "--no-imports", "-c", script], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_it_publishes_a_valid_openapi_schema(tmp_path):
    result = manage(["spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")], {}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/api/v1/runs/{id}/events/" in (tmp_path / "schema.yml").read_text()
