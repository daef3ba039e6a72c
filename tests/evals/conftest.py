"""Fixtures for the evals app: the personas' world, a succeeded run with a trained tiny model, the
eval queue worked off by a real RQ worker, and a stand-in judge server on the allow-list."""

from __future__ import annotations

import django_rq
import pytest

from deployments.conftest import inference_service, trained_model_dir, trained_run, work_off as work_off_queues  # noqa: F401
from evaluation.judge_server import judge_server
from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401


@pytest.fixture
def eval_queue():
    queue = django_rq.get_queue("eval")
    queue.empty()
    yield queue
    queue.empty()


def work_off(queue) -> None:
    """A real RQ worker on the eval queue, in this process (where the test database is)."""
    work_off_queues([queue])


@pytest.fixture
def judge(settings):
    """The stand-in judge, allow-listed like an administrator would."""
    with judge_server() as server:
        settings.QA_BASE_URLS = {**settings.QA_BASE_URLS, server.base_url: None}
        yield server


@pytest.fixture
def run_with_model(acme, trained_model_dir):  # noqa: F811
    return trained_run(acme, trained_model_dir)
