"""Fixtures for the training app: the personas' world, a ready dataset version holding a toy
task the tiny model learns in seconds, and runs on it."""

from __future__ import annotations

import hashlib
import json

import pytest

from ml.conftest import TOY_FACTS
from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401
from tinyforge.core import storage
from tinyforge.datasets.models import DatasetVersion


def toy_jsonl(copies: int = 4) -> bytes:
    rows = [{"instruction": q, "output": a, "metadata": {"copy": c}} for c in range(copies) for q, a in TOY_FACTS]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_version(dataset, content: bytes, *, status: str = "ready", source_kind: str = "upload") -> DatasetVersion:
    number = (dataset.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    version = DatasetVersion.all_teams.create(dataset=dataset, number=number, status=status, source_kind=source_kind)
    version.storage_key = storage.dataset_version_key(dataset.project_id, dataset.pk, version.pk)
    with storage.atomic_write(version.storage_key) as handle:
        handle.write(content)
    if status == "ready":
        version.sha256 = hashlib.sha256(content).hexdigest()
        version.row_count = content.count(b"\n")
        version.size_bytes = len(content)
    version.save()
    return version


@pytest.fixture
def toy_version(acme):
    return make_version(acme.dataset, toy_jsonl())


@pytest.fixture
def tiny_config(tiny_model_dir):
    """Factory: a run config (as the API takes it) that trains the tiny model in about a second."""

    def make(**overrides):
        return {"max_steps": 6, "batch_size": 4, "learning_rate": 3e-3, "max_seq_length": 128,
                "eval_generations": 0, "lora_dropout": 0.0, "seed": 7, "eval_steps": 3, "save_steps": 3,
                "validation_split": 0.2, **overrides}

    return make


@pytest.fixture
def make_run(acme, toy_version, tiny_base_model, tiny_config, django_capture_on_commit_callbacks):
    """Factory: a queued run created through the service, as the API would (job on commit)."""
    from tinyforge.training import services

    def make(version=None, base_model=None, name="toy run", **config):
        base = base_model or tiny_base_model
        resolved = services.resolve_config(base_model=base, method="lora", config=tiny_config(**config),
                                           team_id=acme.team.pk)
        with django_capture_on_commit_callbacks(execute=True):
            return services.create_run(None, project=acme.project, name=name, dataset_version=version or toy_version,
                                       base_model=base, method="lora", config=resolved)

    return make
