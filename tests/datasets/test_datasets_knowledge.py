"""The knowledge recipe through the API: its options, the allow-list, the fact check saved as an eval set,
and the platform's own inference service as teacher with a key the platform signs for the team."""

from __future__ import annotations

import json

import pytest

from connectors.teacher_model import TeacherServer
from personas import assert_error
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.datasets import lifecycle
from tinyforge.deployments.inference import TokenAuthenticator, served_name, team_key
from tinyforge.evals.models import EvalSet
from tinyforge.evaluation.sets import read_eval_file

HANDBOOK = (b"# Leave\nStaff get 28 days of paid leave a year. Requests go to Maria Lopez two weeks ahead.\n\n"
            b"# Equipment\nEvery new colleague receives a laptop on the first day.\n")


@pytest.fixture
def teacher():
    with TeacherServer() as server:
        yield server


def test_an_upload_with_the_knowledge_recipe_makes_grounded_rows_and_a_fact_check_eval_set(
        upload, ingested, acme, settings, teacher, monkeypatch):
    settings.QA_BASE_URLS = {teacher.url: "k3y"}
    messages = []
    record_progress = lifecycle.record_progress
    monkeypatch.setattr(lifecycle, "record_progress",
                        lambda pk, fraction, message: messages.append(message) or record_progress(pk, fraction, message))
    version = ingested(upload(acme.dataset, [("handbook.md", HANDBOOK)], recipe="knowledge",
                              knowledge={"base_url": teacher.url, "model": "teacher", "questions_per_fact": 2,
                                         "concurrency": 2, "prompts": {"answers": "You answer questions briefly."}}))
    assert version.status == "ready", version.error
    rows = [json.loads(line) for line in storage.path(version.storage_key).read_text().splitlines()]
    assert len(rows) == 9 and {r["metadata"]["source"] for r in rows} == {"handbook.md"}
    assert teacher.keys == {"Bearer k3y"}
    source = version.stats["sources"][0]["knowledge"]
    assert source["facts"] == 3 and source["rows_kept"] == 9 and source["gap_fills"] == 3 and source["teacher_tokens"] > 0
    assert {r["instruction"] for r in rows if r["metadata"]["kind"] == "gap_fill"} == {
        "Fill in the gap: Staff get ___ days of paid leave a year.", "Fill in the gap: Requests go to ___ Lopez two weeks ahead.",
        "Fill in the gap: Every new colleague receives a laptop on the first ___."}
    check = version.stats["fact_check"]
    eval_set = EvalSet.all_teams.get(pk=check["eval_set"])
    assert eval_set.project_id == acme.project.pk and eval_set.name == f"{acme.dataset.name} fact check"
    (eval_version,) = eval_set.versions.all()
    questions = read_eval_file(storage.path(eval_version.storage_key))
    assert check["questions"] == len(questions) == 3 and eval_version.source["dataset_version"] == version.pk
    assert {tuple(q.must_include) for q in questions} == {("28",), ("Maria",), ("day",)}
    assert not {q.input for q in questions} & {r["instruction"] for r in rows}
    assert any("2 chunks done, 0 teacher replies dropped by the grounding check" in m and "teacher tokens" in m for m in messages)
    events = Event.all_teams.filter(dataset_version=version).values_list("message", flat=True)
    assert any("3 facts" in m and "teacher tokens" in m for m in events)
    assert any("held-out fact check: 3 questions saved as eval set" in m for m in events)


def test_the_knowledge_recipe_needs_an_allowed_teacher_and_sane_knobs(upload, acme, ingest_queue):
    response = upload(acme.dataset, [("h.md", HANDBOOK)], recipe="knowledge")
    assert assert_error(response, 400, "invalid")["fields"]["options.knowledge"]
    response = upload(acme.dataset, [("h.md", HANDBOOK)], recipe="knowledge",
                      knowledge={"base_url": "http://169.254.169.254/v1", "model": "m", "questions_per_fact": 0})
    fields = assert_error(response, 400, "invalid")["fields"]
    assert "TINYFORGE_QA_BASE_URLS" in fields["options.knowledge.base_url"][0]
    assert fields["options.knowledge.questions_per_fact"]
    assert ingest_queue.count == 0


@pytest.mark.django_db(transaction=True)  # the ingest job closes its connection when it ends
def test_the_platforms_own_inference_service_is_called_with_a_team_key_it_signs(
        upload, ingested, acme, globex, settings, teacher):
    settings.INFERENCE_URL = teacher.url.removesuffix("/v1")
    settings.QA_BASE_URLS = {teacher.url: None}  # as out of the box: no operator key for the own service
    version = ingested(upload(acme.dataset, [("handbook.md", HANDBOOK)], recipe="knowledge",
                              knowledge={"base_url": teacher.url, "model": "teacher", "questions_per_fact": 1, "gap_fills": False}))
    assert version.status == "ready", version.error
    (header,) = teacher.keys
    key = header.removeprefix("Bearer ")
    assert key.startswith("tfteam_") and key not in json.dumps(version.source_config)
    caller = TokenAuthenticator().authenticate(key)
    assert caller.models == {acme.deployment.name: served_name(acme.deployment.pk)}  # its team's only
    assert TokenAuthenticator().authenticate(team_key(globex.team.pk)).models == {
        globex.deployment.name: served_name(globex.deployment.pk)}
    assert TokenAuthenticator().authenticate(key[:-2] + "xx") is None


def test_the_dry_run_estimates_the_import_and_shows_the_first_chunks_rows_saving_nothing(
        client_for, alice, vic, acme, settings, teacher, ingest_queue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.QA_BASE_URLS = {teacher.url: None}
    options = json.dumps({"recipe": "knowledge", "knowledge": {"base_url": teacher.url, "model": "teacher",
                                                               "questions_per_fact": 2, "gap_fills": False}})

    def send(user, **extra):
        return client_for(user).post(f"/api/v1/datasets/{acme.dataset.pk}/knowledge-preview/",
                                     {"files": [SimpleUploadedFile("handbook.md", HANDBOOK)], "options": options,
                                      **extra}, format="multipart")

    response = send(alice, chunks=1)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["estimate"]["chunks"] == 2 and body["estimate"]["teacher_calls"] == 6
    assert len(body["rows"]) == 4 and body["stats"]["chunks_done"] == 1 and len(teacher.steps("facts")) == 1
    assert {tuple(h["must_include"]) for h in body["heldout"]} == {("28",), ("Maria",)}
    assert ingest_queue.count == 0 and acme.dataset.versions.count() == 1
    assert send(vic).status_code == 403
    bad = client_for(alice).post(f"/api/v1/datasets/{acme.dataset.pk}/knowledge-preview/",
                                 {"files": [SimpleUploadedFile("h.md", HANDBOOK)], "options": "{}"}, format="multipart")
    assert assert_error(bad, 400, "invalid")["fields"]["options.recipe"]


def test_the_version_page_filters_rows_by_document_and_by_fact(upload, ingested, client_for, alice, acme, settings,
                                                               teacher):
    settings.QA_BASE_URLS = {teacher.url: None}
    version = ingested(upload(acme.dataset, [("handbook.md", HANDBOOK), ("other.md", b"# Other\nThe gym opens at 7.\n")],
                              recipe="knowledge", knowledge={"base_url": teacher.url, "model": "teacher",
                                                             "questions_per_fact": 2, "gap_fills": False}))
    assert version.status == "ready", version.error
    client = client_for(alice)
    url = f"/api/v1/dataset-versions/{version.pk}/preview/"
    other = client.get(url, {"source": "other.md"}).json()
    assert other["count"] == 2 and {r["row"]["metadata"]["source"] for r in other["results"]} == {"other.md"}
    fact_id = other["results"][0]["row"]["metadata"]["fact_id"]
    by_id = client.get(url, {"fact": fact_id, "page_size": 1}).json()
    assert by_id["count"] == 2 and len(by_id["results"]) == 1 and by_id["next"]
    by_text = client.get(url, {"fact": "Staff get 28 days of paid leave a year."}).json()
    assert by_text["count"] == 2 and all("28 days" in r["row"]["output"] for r in by_text["results"])
    assert client.get(url).json()["count"] == version.row_count == 8


def test_a_knowledge_import_whose_worker_died_resumes_after_the_chunks_it_finished(
        upload, ingested, acme, settings, teacher, ingest_queue, django_capture_on_commit_callbacks):
    from datetime import timedelta
    from itertools import islice

    from django.utils import timezone

    from tinyforge.connectors.chunking import chunk_blocks
    from tinyforge.connectors.knowledge import KnowledgeGenerator
    from tinyforge.core.reconcile import reconcile
    from tinyforge.datasets.importing import ingest_options, version_sources
    from tinyforge.datasets.jobs import _work_key
    from tinyforge.datasets.models import DatasetVersion

    settings.QA_BASE_URLS = {teacher.url: None}
    created = upload(acme.dataset, [("handbook.md", HANDBOOK)], recipe="knowledge",
                     knowledge={"base_url": teacher.url, "model": "teacher", "questions_per_fact": 1, "gap_fills": False})
    version = DatasetVersion.all_teams.get(pk=created.json()["id"])
    # The job's worker, killed after the first chunk: what it left is the journal in its work folder.
    workdir = storage.folder(_work_key(version))
    options = ingest_options(version.source_config, acme.team.pk)
    (source,) = version_sources(version, workdir)
    generator = KnowledgeGenerator(options.knowledge, workdir / "part-0000.jsonl.journal")
    rows = generator.rows(chunk_blocks(source.records(), options.chunk_chars, options.overlap_chars))
    next(islice(rows, 1))
    rows.close()
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 5)
    DatasetVersion.all_teams.filter(pk=version.pk).update(status="ingesting", heartbeat_at=long_ago)
    asked = len(teacher.steps("facts"))
    ingest_queue.empty()  # the dead worker had taken the job

    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile("versions")["retried"] == [version.pk]
    assert ingest_queue.job_ids == [f"ingest-version-{version.pk}"]
    version = ingested(version.pk)
    assert version.status == "ready" and version.attempt == 2, version.error
    knowledge = version.stats["sources"][0]["knowledge"]
    assert knowledge["chunks_resumed"] == 1 and knowledge["chunks_done"] == 2
    assert len(teacher.steps("facts")) - asked == 1 and version.row_count == 3
    assert Event.all_teams.filter(dataset_version=version, source="reconciler",
                                  message__contains="resuming as attempt 2 after the 1 chunks it finished").exists()


def test_the_form_learns_the_allowed_teachers_and_default_prompts_but_no_key(client_for, alice, settings):
    settings.QA_BASE_URLS = {settings.INFERENCE_URL + "/v1": None, "http://vllm:8000/v1": "s3cret"}
    body = client_for(alice).get("/api/v1/datasets/knowledge-options/").json()
    assert body["teachers"] == [settings.INFERENCE_URL + "/v1", "http://vllm:8000/v1"]
    assert body["own_inference_url"] == settings.INFERENCE_URL + "/v1"
    assert "atomic facts" in body["prompts"]["facts"] and body["defaults"]["questions_per_fact"] == 4
    assert "s3cret" not in json.dumps(body)
    assert client_for().get("/api/v1/datasets/knowledge-options/").status_code in (401, 403)


def test_a_run_trained_on_a_knowledge_version_is_scored_on_its_fact_check(upload, ingested, acme, settings, teacher):
    from tinyforge.evals.models import Evaluation
    from tinyforge.evals.services import evaluate_finished_run
    from tinyforge.training.models import TrainingRun

    settings.QA_BASE_URLS = {teacher.url: None}
    version = ingested(upload(acme.dataset, [("handbook.md", HANDBOOK)], recipe="knowledge",
                              knowledge={"base_url": teacher.url, "model": "teacher", "questions_per_fact": 1, "gap_fills": False}))
    run = TrainingRun.all_teams.create(project=acme.project, name="facts run", dataset_version=version,
                                       base_model="smollm2-135m-instruct", status="succeeded")
    evaluate_finished_run(run)
    check = Evaluation.all_teams.get(run=run, name="facts run: fact check")
    assert check.eval_set_version_id == version.stats["fact_check"]["eval_set_version"]
    assert check.scorers == [{"name": "must_include"}] and [t["kind"] for t in check.targets][0] == "base"
    assert not Evaluation.all_teams.filter(run=acme.run, name__endswith="fact check").exists()
