"""Fixtures for deployments: trained tiny models, runs that point at them, the platform's
inference service (tinyforge.deployments.inference plugged into the serving app) in a thread of
this process, and real RQ workers on real Redis."""

from __future__ import annotations

import shutil
import time

import django_rq
import pytest
from rq import SimpleWorker

from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401
from serving.conftest import running_server
from tinyforge.core import storage
from tinyforge.training.models import Checkpoint, TrainingRun
from training.conftest import make_run, tiny_config, toy_version  # noqa: F401

FACTS = [
    {"instruction": "What is the capital of Zorbland?", "output": "The capital of Zorbland is Quillport."},
    {"instruction": "Reverse the word hello.", "output": "olleh"},
] * 8


@pytest.fixture(scope="session")
def trained_model_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA fine-tune of the tiny model as the ML engine writes it (final model + checkpoints)."""
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import train

    out = tmp_path_factory.mktemp("deployable")
    train(TrainConfig(base_model=str(tiny_model_dir), max_steps=4, batch_size=4, learning_rate=3e-3, max_seq_length=96,
                      eval_generations=0, lora_dropout=0.0, seed=5, validation_split=0.25, eval_steps=2, save_steps=2),
          FACTS, out)
    return out


def trained_run(world, source_dir, name: str = "trained run") -> TrainingRun:
    """A succeeded run of `world` (a persona team) whose final model and best checkpoint are copies
    of `source_dir` in the data directory, as the train job leaves them."""
    run = TrainingRun.all_teams.create(project=world.project, name=name, dataset_version=world.version,
                                       base_model="tiny", status="succeeded")
    run.output_key = storage.run_output_key(world.project.pk, run.pk)
    shutil.copytree(source_dir, storage.path(run.output_key), ignore=shutil.ignore_patterns("checkpoints"),
                    dirs_exist_ok=True)  # ids repeat across tests that roll back; the data directory stays
    last = sorted((source_dir / "checkpoints").iterdir())[-1]
    step = int(last.name.split("-")[1])
    key = storage.checkpoint_key(world.project.pk, run.pk, step)
    shutil.copytree(last, storage.path(key), dirs_exist_ok=True)
    Checkpoint.all_teams.create(run=run, step=step, storage_key=key, eval_loss=1.0, is_best=True)
    run.save()
    return run


@pytest.fixture
def queues():
    names = ("train", "deploy")
    for name in names:
        django_rq.get_queue(name).empty()
    yield [django_rq.get_queue(name) for name in names]
    for name in names:
        django_rq.get_queue(name).empty()


def work_off(queues) -> None:
    """A real RQ worker, in this process (where the test database and the live server are)."""
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


@pytest.fixture
def inference_service(transactional_db, settings, request):
    """The platform's inference service on a free port, wired as `tinyforge serve-platform` wires it
    (deployments, API tokens, answers kept for feedback); the web process proxies to it."""
    from tinyforge.deployments.inference import CompletionLog, DeploymentRegistry, TokenAuthenticator
    from tinyforge.serving.app import ServerSettings
    from tinyforge.serving.pool import RuntimeOptions

    registry = DeploymentRegistry()
    registry.refresh_seconds = 0.3
    from tinyforge.ml.quality_budget import QualityBudget

    # A test may parametrize the int8 quality budget (indirect=True), e.g. one no model meets.
    budget = getattr(request, "param", None) or QualityBudget()
    server_settings = ServerSettings(runtime=RuntimeOptions(device="cpu", max_slots=4, max_context=256, budget=budget))
    # Ready with no deployments at all: an empty platform is a healthy one.
    with running_server(registry, TokenAuthenticator(), server_settings, answer_log=CompletionLog()) as server:
        settings.INFERENCE_URL = server.base_url
        yield server


def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_status(deployment, status: str, timeout: float = 60.0):
    def reached():
        deployment.refresh_from_db()
        return deployment.status == status

    try:
        wait_for(reached, f"deployment {deployment.name} to become {status}", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {deployment.status}: {deployment.error}") from None
    return deployment


def inference_secret(user, team, scopes=("inference",)) -> str:
    from tinyforge.accounts.models import ApiToken

    secret, prefix, token_hash = ApiToken.new_secret()
    ApiToken.all_teams.create(user=user, team=team, name="inference", prefix=prefix, token_hash=token_hash,
                              scopes=list(scopes))
    return secret

