"""The OpenAI fine-tuning API through the official `openai` client, against a real server
started by the test (pytest-django's live_server), jobs run by a real RQ worker on real Redis."""

from __future__ import annotations

import django_rq
import openai
import pytest
from rq import SimpleWorker

from training.conftest import toy_jsonl

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queues():
    names = ("ingest", "train")
    for name in names:
        django_rq.get_queue(name).empty()
    yield [django_rq.get_queue(name) for name in names]
    for name in names:
        django_rq.get_queue(name).empty()


def work_off(queues):
    """A real RQ worker, in this process (the live server's database is in this process too)."""
    SimpleWorker(queues, connection=queues[0].connection).work(burst=True)


def openai_client(live_server, secret):
    return openai.OpenAI(api_key=secret, base_url=f"{live_server.url}/v1", max_retries=0)


@pytest.fixture
def api_secret(alice, acme):
    from tinyforge.accounts.models import ApiToken

    secret, prefix, token_hash = ApiToken.new_secret()
    ApiToken.all_teams.create(user=alice, team=acme.team, name="openai", prefix=prefix, token_hash=token_hash,
                              scopes=["read", "write"])
    return secret


def test_the_official_client_uploads_trains_lists_and_follows_a_job(live_server, api_secret, tiny_model_dir, tmp_path,
                                                                    queues):
    client = openai_client(live_server, api_secret)
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune" and uploaded.filename == "train.jsonl"

    job = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=uploaded.id, suffix="faq-bot",
                                         hyperparameters={"n_epochs": 2, "batch_size": 4}, seed=7)
    assert job.status == "validating_files" and job.hyperparameters.n_epochs == 2 and job.fine_tuned_model is None
    assert [j.id for j in client.fine_tuning.jobs.list(limit=5).data][0] == job.id

    work_off(queues)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{tiny_model_dir.name}:acme:faq-bot:{job.id.removeprefix('ftjob-')}"
    assert client.files.retrieve(uploaded.id).status == "processed"
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert events[0].message.startswith("succeeded after") and events[-1].message.startswith("queued")
    assert all(e.object == "fine_tuning.job.event" and e.level in ("info", "warn", "error") for e in events)
    older = client.fine_tuning.jobs.list_events(job.id, limit=2, after=events[1].id).data
    assert [e.id for e in older] == [events[2].id, events[3].id]
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].step_number > checkpoints[-1].step_number
    assert checkpoints[0].metrics.valid_loss is not None and checkpoints[0].metrics.train_loss is not None


def test_cancel_through_the_client_and_errors_the_client_understands(live_server, api_secret, tiny_model_dir, tmp_path,
                                                                     queues, acme, alice):
    client = openai_client(live_server, api_secret)
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    file_id = client.files.create(file=data.open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # twice: no-op
    work_off(queues)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"

    with pytest.raises(openai.BadRequestError, match="learning_rate"):
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id,
                                       hyperparameters={"learning_rate_multiplier": 10000})
    with pytest.raises(openai.BadRequestError, match="Unknown base model"):
        client.fine_tuning.jobs.create(model="no such model", training_file=file_id)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=data.open("rb"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-999999")
    with pytest.raises(openai.AuthenticationError):
        openai_client(live_server, "tf_not-a-token").fine_tuning.jobs.list()


def test_a_token_sees_only_its_own_teams_jobs(live_server, api_secret, globex, charlie, tiny_model_dir, tmp_path, queues):
    from tinyforge.accounts.models import ApiToken

    secret, prefix, token_hash = ApiToken.new_secret()
    ApiToken.all_teams.create(user=charlie, team=globex.team, name="openai", prefix=prefix, token_hash=token_hash,
                              scopes=["read", "write"])
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    ours = openai_client(live_server, api_secret)
    theirs = openai_client(live_server, secret)
    file_id = ours.files.create(file=data.open("rb"), purpose="fine-tune").id
    job = ours.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="training_file"):
        theirs.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id)
    assert job.id not in [j.id for j in theirs.fine_tuning.jobs.list().data]
