"""One layer up from calling the job: a real RQ worker process on real Redis ingests an upload."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from dataset_files import GOOD_JSONL
from tinyforge.core.models import Event
from tinyforge.datasets.models import DatasetVersion

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def worker_environment(redis_url: str, data_dir: Path) -> dict:
    """The test's own database, Redis and data directory, for a worker in another process."""
    database = connection.settings_dict
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("a worker in another process needs a database it can open: run with DATABASE_URL=postgresql://...")
    url = urlsplit(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1))
    env = dict(os.environ)
    env.update(DATABASE_URL=urlunsplit(url._replace(path=f"/{database['NAME']}")), REDIS_URL=redis_url,
               TINYFORGE_DATA_DIR=str(data_dir), SECRET_KEY=settings.SECRET_KEY)
    return env


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_ingests_an_upload_into_a_ready_version(upload, acme, redis_url, tinyforge_data_dir,
                                                                 ingest_queue):
    env = worker_environment(redis_url, tinyforge_data_dir)
    response = upload(acme.dataset, [("faq.jsonl", GOOD_JSONL)])
    assert response.status_code == 201, response.content
    version_id = response.json()["id"]
    assert ingest_queue.job_ids == [f"ingest-version-{version_id}"]
    result = subprocess.run([sys.executable, "manage.py", "rqworker", "ingest", "--burst"], cwd=BACKEND, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    version = DatasetVersion.all_teams.get(pk=version_id)
    assert version.status == "ready", (version.error, result.stderr[-3000:])
    assert version.row_count == 6 and version.sha256 and version.heartbeat_at is not None
    assert ingest_queue.count == 0
    messages = list(Event.all_teams.filter(dataset_version=version, source="ingest").values_list("message", flat=True))
    assert messages[0].startswith("import of faq v2 started") and messages[-1].startswith("version 2 is ready")
