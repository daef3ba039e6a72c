"""The OpenAI fine-tuning API through the official `openai` client, against a real server
started by the test (pytest-django's live_server), jobs run by a real RQ worker on real Redis."""

from __future__ import annotations

import json

import django_rq
import openai
import pytest
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from rq import SimpleWorker

from ml.conftest import TOY_FACTS
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


def assert_parses_as(model, raw: dict) -> None:
    """Every field of the client's type is in the body (the optional ones as null), and the body
    validates as that type."""
    assert set(model.model_fields) <= set(raw), f"missing {set(model.model_fields) - set(raw)}"
    model.model_validate(raw)


@pytest.fixture
def api_secret(alice, acme):
    from tinyforge.accounts.models import ApiToken

    secret, prefix, token_hash = ApiToken.new_secret()
    ApiToken.all_teams.create(user=alice, team=acme.team, name="openai", prefix=prefix, token_hash=token_hash,
                              scopes=["read", "write"])
    return secret


def test_the_official_client_uploads_trains_lists_and_follows_a_job(live_server, api_secret, tiny_base_model, tmp_path,
                                                                    queues):
    client = openai_client(live_server, api_secret)
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune" and uploaded.filename == "train.jsonl"

    job = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=uploaded.id, suffix="faq-bot",
                                         hyperparameters={"n_epochs": 2, "batch_size": 4}, seed=7)
    assert job.status == "validating_files" and job.hyperparameters.n_epochs == 2 and job.fine_tuned_model is None
    assert [j.id for j in client.fine_tuning.jobs.list(limit=5).data][0] == job.id

    work_off(queues)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{tiny_base_model}:acme:faq-bot:{job.id.removeprefix('ftjob-')}"
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at and done.error is None
    assert_parses_as(FineTuningJob, client.fine_tuning.jobs.with_raw_response.retrieve(job.id).http_response.json())
    assert client.files.retrieve(uploaded.id).status == "processed"
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert events[0].message.startswith("succeeded after") and events[-1].message.startswith("queued")
    assert all(e.object == "fine_tuning.job.event" and e.level in ("info", "warn", "error") for e in events)
    older = client.fine_tuning.jobs.list_events(job.id, limit=2, after=events[1].id).data
    assert [e.id for e in older] == [events[2].id, events[3].id]
    # The client's auto-pagination (after = the last id of each page, until has_more is false).
    assert [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=3)] == [e.id for e in events]
    raw_events = client.fine_tuning.jobs.with_raw_response.list_events(job.id).http_response.json()
    assert_parses_as(FineTuningJobEvent, raw_events["data"][0])
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(checkpoints) > 1 and checkpoints[0].step_number > checkpoints[-1].step_number
    assert checkpoints[0].metrics.valid_loss is not None and checkpoints[0].metrics.train_loss is not None
    assert [c.id for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)] == [c.id for c in checkpoints]
    raw_checkpoints = client.fine_tuning.jobs.checkpoints.with_raw_response.list(job.id).http_response.json()
    assert_parses_as(FineTuningJobCheckpoint, raw_checkpoints["data"][0])
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.checkpoints.list(job.id, after="ftckpt-999999")


def test_files_list_page_and_download_like_openais(live_server, api_secret, tmp_path):
    client = openai_client(live_server, api_secret)
    contents = []
    for n in range(3):
        data = tmp_path / f"part-{n}.jsonl"
        data.write_bytes(toy_jsonl(copies=n + 1))
        contents.append(data.read_bytes())
        client.files.create(file=data.open("rb"), purpose="fine-tune")
    newest_first = client.files.list(limit=10_000).data  # OpenAI's files limit goes to 10,000
    assert [f.filename for f in newest_first] == ["part-2.jsonl", "part-1.jsonl", "part-0.jsonl"]
    assert [f.id for f in client.files.list(limit=1)] == [f.id for f in newest_first]
    assert [f.id for f in client.files.list(limit=1, order="asc")] == [f.id for f in reversed(newest_first)]
    assert_parses_as(FileObject, client.files.with_raw_response.list().http_response.json()["data"][0])
    assert client.files.content(newest_first[0].id).content == contents[2]
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-999999")
    with pytest.raises(openai.BadRequestError, match="order"):
        client.files.list(extra_query={"order": "sideways"})


def test_jobs_keep_their_metadata_and_the_list_filters_by_it(live_server, api_secret, tiny_base_model, tmp_path,
                                                             queues):
    client = openai_client(live_server, api_secret)
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    file_id = client.files.create(file=data.open("rb"), purpose="fine-tune").id
    tagged = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id,
                                            metadata={"team": "support", "odd__key": "x y"})
    other = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id,
                                           metadata={"team": "sales"})
    plain = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id)
    assert tagged.metadata == {"team": "support", "odd__key": "x y"} and plain.metadata is None
    assert client.fine_tuning.jobs.retrieve(tagged.id).metadata == tagged.metadata
    assert isinstance(plain.hyperparameters.n_epochs, int) and isinstance(plain.seed, int)
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "support"})] == [tagged.id]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"odd__key": "x y"})] == [tagged.id]
    without = [j.id for j in client.fine_tuning.jobs.list(extra_query={"metadata": "null"})]
    assert plain.id in without and tagged.id not in without and other.id not in without
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)][:3] == [plain.id, other.id, tagged.id]
    with pytest.raises(openai.BadRequestError, match="metadata"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id, metadata={"n": 1})
    with pytest.raises(openai.BadRequestError, match="metadata"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id,
                                       metadata={f"k{i}": "v" for i in range(17)})


def test_cancel_through_the_client_and_errors_the_client_understands(live_server, api_secret, tiny_base_model, tmp_path,
                                                                     queues, acme, alice):
    client = openai_client(live_server, api_secret)
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    file_id = client.files.create(file=data.open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # twice: no-op
    work_off(queues)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"

    with pytest.raises(openai.BadRequestError, match="learning_rate"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id,
                                       hyperparameters={"learning_rate_multiplier": 10000})
    with pytest.raises(openai.BadRequestError, match="hyperparameters.n_epochs: epochs must be at most 1000"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id,
                                       hyperparameters={"n_epochs": 10**20})
    with pytest.raises(openai.BadRequestError, match="Unknown base model"):
        client.fine_tuning.jobs.create(model="no such model", training_file=file_id)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=data.open("rb"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-999999")
    with pytest.raises(openai.AuthenticationError):
        openai_client(live_server, "tf_not-a-token").fine_tuning.jobs.list()


def test_a_token_sees_only_its_own_teams_jobs(live_server, api_secret, globex, charlie, tiny_base_model, tmp_path, queues):
    from tinyforge.accounts.models import ApiToken

    secret, prefix, token_hash = ApiToken.new_secret()
    ApiToken.all_teams.create(user=charlie, team=globex.team, name="openai", prefix=prefix, token_hash=token_hash,
                              scopes=["read", "write"])
    data = tmp_path / "train.jsonl"
    data.write_bytes(toy_jsonl())
    ours = openai_client(live_server, api_secret)
    theirs = openai_client(live_server, secret)
    file_id = ours.files.create(file=data.open("rb"), purpose="fine-tune").id
    job = ours.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        theirs.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="training_file"):
        theirs.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id)
    assert job.id not in [j.id for j in theirs.fine_tuning.jobs.list().data]


def test_a_dpo_job_trains_on_preference_pairs_like_openais_method_dpo(live_server, api_secret, tiny_base_model,
                                                                      tmp_path, queues):
    from tinyforge.training.models import RunMetric

    client = openai_client(live_server, api_secret)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "chosen": f"Yes. {a}", "rejected": f"No. {a}"}) + "\n"
                            for _ in range(3) for q, a in TOY_FACTS))
    file_id = client.files.create(file=data.open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id, method={
        "type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3, "n_epochs": 1, "batch_size": 4}}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.3
    assert job.method.dpo.hyperparameters.n_epochs == 1
    work_off(queues)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    run_id = int(job.id.removeprefix("ftjob-"))
    names = set(RunMetric.all_teams.filter(run_id=run_id).values_list("name", flat=True))
    assert {"reward_chosen", "reward_rejected", "reward_margin", "preference_accuracy",
            "eval_preference_accuracy"} <= names

    with pytest.raises(openai.BadRequestError, match="Only the 'supervised' and 'dpo' methods"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id, method={"type": "reinforcement"})
    with pytest.raises(openai.BadRequestError, match="Only method dpo takes beta"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id, method={
            "type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}})
    with pytest.raises(openai.BadRequestError, match="hyperparameters.beta: beta must be greater than 0"):
        client.fine_tuning.jobs.create(model=tiny_base_model, training_file=file_id, method={
            "type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}})


def openai_dpo_row(question: str, good: str, bad: str, **changes) -> dict:
    row = {"input": {"messages": [{"role": "user", "content": question}], "tools": [], "parallel_tool_calls": True},
           "preferred_output": [{"role": "assistant", "content": good}],
           "non_preferred_output": [{"role": "assistant", "content": bad}]}
    return {**row, **changes}


def test_a_file_in_openais_dpo_format_becomes_pairs_and_a_bad_row_is_named_by_line_and_field(
        live_server, api_secret, queues, tmp_path):
    from tinyforge.core import storage
    from tinyforge.datasets.models import DatasetVersion

    client = openai_client(live_server, api_secret)

    def upload(rows, name):
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return client.files.create(file=path.open("rb"), purpose="fine-tune").id

    good = [openai_dpo_row(q, f"Yes. {a}", f"No. {a}") for q, a in TOY_FACTS]
    bad = {  # each after the good rows, so on line len(good) + 1 of its file
        "same": (openai_dpo_row("q1", "same", "same"),
                 "row: Value error, chosen and rejected are the same text, so there is no preference to learn"),
        "missing": ({k: v for k, v in openai_dpo_row("q2", "a", "b").items() if k != "non_preferred_output"},
                    "field 'non_preferred_output' must be a list of one assistant message"),
        "role": (openai_dpo_row("q3", "a", "b", preferred_output=[{"role": "user", "content": "a"}]),
                 "the message in 'preferred_output' has role 'user'; it must be 'assistant'"),
        "no-prompt": (openai_dpo_row("q4", "a", "b", input={"messages": []}),
                      "field 'input.messages' must be a non-empty list of messages"),
        "tools": (openai_dpo_row("q5", "a", "b", input={"messages": [{"role": "user", "content": "q5"}],
                                                        "tools": [{"type": "function"}]}),
                  "tools are not supported: give input.messages only"),
    }
    good_id = upload(good, "dpo.jsonl")
    bad_ids = {name: upload(good + [row], f"{name}.jsonl") for name, (row, _) in bad.items()}
    work_off(queues)

    shown = client.files.retrieve(good_id)
    assert shown.status == "processed", shown.status_details
    version = DatasetVersion.all_teams.get(pk=int(good_id.removeprefix("file-")))
    assert version.row_count == len(good) and version.validation_report["invalid_count"] == 0
    first = json.loads(storage.path(version.storage_key).read_text().splitlines()[0])
    assert first == {"messages": [{"role": "user", "content": TOY_FACTS[0][0]}],
                     "chosen": [{"role": "assistant", "content": f"Yes. {TOY_FACTS[0][1]}"}],
                     "rejected": [{"role": "assistant", "content": f"No. {TOY_FACTS[0][1]}"}],
                     "metadata": first["metadata"]}
    for name, (_, reason) in bad.items():
        shown = client.files.retrieve(bad_ids[name])
        assert shown.status == "error", name
        assert f"{name}.jsonl, line {len(good) + 1}" in shown.status_details and reason in shown.status_details, (
            name, shown.status_details)
