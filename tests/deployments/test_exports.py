"""Exports through the API and the export job: HF zips, verified ONNX (+ int8), failures that are
never offered for download, listing, deleting and the reconciler."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from capabilities import needs_llama_cpp
from deployments.conftest import trained_run, work_off
from personas import assert_error
from tinyforge.core import storage
from tinyforge.core.models import AuditEvent, Event
from tinyforge.core.reconcile import reconcile
from tinyforge.deployments import jobs, lifecycle
from tinyforge.deployments.models import Export
from tinyforge.ml import onnx_export
from tinyforge.training.models import Checkpoint, TrainingRun
from training.conftest import make_version, toy_jsonl

pytestmark = pytest.mark.django_db(transaction=True)


def create(client, run, **fields) -> Export:
    response = client.post("/api/v1/exports/", {"run": run.pk, **fields}, format="json")
    assert response.status_code == 201, response.content
    return Export.all_teams.get(pk=response.json()["id"])


def export_now(export: Export) -> Export:
    """The job, called as a worker calls it."""
    assert jobs.export(export.pk) in ("succeeded", "failed")
    export.refresh_from_db()
    return export


def download(client, export) -> zipfile.ZipFile:
    response = client.get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].endswith(f'filename="{storage.path(export.storage_key).name}"')
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def messages(export) -> list[str]:
    return list(Event.all_teams.filter(export=export).order_by("id").values_list("message", flat=True))


def export_files(export) -> list:
    folder = storage.path(storage.export_folder_key(export.project_id, export.pk))
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_it_exports_the_best_checkpoint_as_a_zip_of_the_adapter(acme, alice, client_for, queues, trained_model_dir):
    run = trained_run(acme, trained_model_dir)
    best = run.checkpoints.get(is_best=True)
    export = create(client_for(alice), run, format="hf")
    assert export.checkpoint == best and export.status == "pending" and export.runtime == ""
    assert queues[1].job_ids == [f"export-{export.pk}"]

    export = export_now(export)
    assert export.status == "succeeded", export.error
    assert export.progress == 1.0 and export.started_at and export.finished_at and export.heartbeat_at
    assert export.size_bytes == storage.path(export.storage_key).stat().st_size
    archive = download(client_for(alice), export)
    top = f"trained-run-step-{best.step}-hf"
    assert export.storage_key.endswith(f"/{top}.zip")
    names = set(archive.namelist())
    assert {f"{top}/adapter_config.json", f"{top}/adapter_model.safetensors", f"{top}/README.md",
            f"{top}/tokenizer_config.json", f"{top}/tinyforge.json"} <= names
    assert json.loads(archive.read(f"{top}/tinyforge.json"))["export"]["merged"] is False
    log = messages(export)
    assert "queued" in log[0] and "started on worker" in log[1] and "copying the LoRA adapter" in log
    assert log[-1].startswith(f"export ready: {top}.zip")
    assert AuditEvent.all_teams.filter(action="exported", target_id=str(export.pk), actor=alice).exists()
    # A duplicate or late delivery of the job changes nothing.
    assert jobs.export(export.pk) == "skipped"
    assert Export.all_teams.get(pk=export.pk).finished_at == export.finished_at


def test_a_chosen_checkpoint_is_merged_into_full_weights(acme, alice, client_for, queues, trained_model_dir):
    run = trained_run(acme, trained_model_dir)
    first = sorted((trained_model_dir / "checkpoints").iterdir())[0]
    step = int(first.name.split("-")[1])
    key = storage.checkpoint_key(acme.project.pk, run.pk, step)
    shutil.copytree(first, storage.path(key))
    chosen = Checkpoint.all_teams.create(run=run, step=step, storage_key=key, eval_loss=2.0)
    export = export_now(create(client_for(alice), run, format="hf_merged", checkpoint=chosen.pk))
    assert export.status == "succeeded", export.error
    names = download(client_for(alice), export).namelist()
    top = f"trained-run-step-{step}-hf-merged"
    assert f"{top}/model.safetensors" in names and f"{top}/config.json" in names
    assert not any(name.endswith("adapter_config.json") for name in names)


def verified_export(acme, client, queues, run_dir, format: str, quantize: str) -> dict:
    """A run trained in `run_dir`, held out on a validation set of its own, exported by a real
    worker: the export's body, once it succeeded and passed its verification on those rows."""
    run = trained_run(acme, run_dir)
    run.validation_version = make_version(acme.dataset, toy_jsonl(1))
    run.save()
    response = client.post("/api/v1/exports/", {"run": run.pk, "format": format, "quantize": quantize}, format="json")
    assert response.status_code == 201, response.content
    work_off(queues)
    body = client.get(f"/api/v1/exports/{response.json()['id']}/").json()
    assert body["status"] == "succeeded", body["error"]
    report = body["verification"]
    assert report["passed"] is True and report["precision"] == quantize
    assert report["heldout_source"] == f"validation set faq v{run.validation_version.number}"
    return body


def test_a_real_worker_exports_verified_onnx_int8_with_its_numbers(acme, alice, client_for, queues,
                                                                    trained_model_dir):
    client = client_for(alice)
    body = verified_export(acme, client, queues, trained_model_dir, "onnx", "int8")
    report = body["verification"]
    fp32, int8 = report["fp32"], report["int8"]
    assert fp32["identical_generations"] == fp32["generations"] > 0
    assert fp32["max_abs_logit_diff"] <= fp32["logits_atol"]
    assert {"heldout_loss", "heldout_loss_change_vs_onnx_fp32", "token_agreement", "identical_generations"} <= set(int8)
    assert body["filename"].endswith("-onnx-int8.zip") and body["size_bytes"] > 0
    export = Export.all_teams.get(pk=body["id"])
    names = download(client, export).namelist()
    assert any(name.endswith("/model.onnx") for name in names)
    assert any(name.endswith("/verification.json") for name in names)
    assert "quantizing to int8" in messages(export)


@pytest.fixture(scope="module")
def smol_tokenizer_run_dir(tmp_path_factory):
    """A LoRA fine-tune (with checkpoints) of a tiny Llama carrying SmolLM2's tokenizer: llama.cpp's
    converter knows only the tokenizers of published models."""
    from transformers import AutoTokenizer

    from tinymodel import build_tiny_model
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.models import resolve_base_model
    from tinyforge.ml.train import train

    root = tmp_path_factory.mktemp("gguf-deployable")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("smollm2-135m-instruct"))
    base = build_tiny_model(root / "base", hidden_size=256, context=512, tokenizer=tokenizer)
    train(TrainConfig(base_model=str(base), max_steps=4, batch_size=4, learning_rate=3e-3, max_seq_length=96,
                      eval_generations=0, lora_dropout=0.0, seed=5, validation_split=0.25, eval_steps=2, save_steps=2),
          [json.loads(line) for line in toy_jsonl(1).decode().splitlines()] * 4, root / "run")
    return root / "run"


@needs_llama_cpp
def test_a_real_worker_exports_a_q4_k_m_gguf_verified_in_llama_cpp_with_its_numbers(
        acme, alice, client_for, queues, smol_tokenizer_run_dir, settings):
    settings.EXPORT_MIN_TOKEN_AGREEMENT = 0.0  # a 4-step tiny model: its agreement is not the point here
    client = client_for(alice)
    body = verified_export(acme, client, queues, smol_tokenizer_run_dir, "gguf", "q4_k_m")
    report = body["verification"]
    assert report["f16"]["identical_generations"] == report["f16"]["generations"] > 0
    assert report["q4_k_m"]["budget"]["max_loss_increase"] == django_settings.EXPORT_Q4_K_M_MAX_LOSS_INCREASE
    assert body["filename"].endswith("-gguf-q4_k_m.zip")
    export = Export.all_teams.get(pk=body["id"])
    names = download(client, export).namelist()
    top = body["filename"].removesuffix(".zip")
    assert {f"{top}/model.gguf", f"{top}/Modelfile", f"{top}/verification.json", f"{top}/README.md"} <= set(names)
    assert "quantizing to q4_k_m" in messages(export)
    assert export.progress == 1.0


@needs_llama_cpp
def test_a_real_worker_exports_a_llama_cpp_bundle_with_its_gguf_verified(
        acme, alice, client_for, queues, smol_tokenizer_run_dir, settings):
    settings.EXPORT_MIN_TOKEN_AGREEMENT = 0.0  # a 4-step tiny model: its agreement is not the point here
    client = client_for(alice)
    body = verified_export(acme, client, queues, smol_tokenizer_run_dir, "bundle", "q8_0")
    assert body["runtime"] == "llama.cpp" and body["filename"].endswith("-bundle-llama-cpp-q8_0.zip")
    report = body["verification"]
    assert report["gguf_type"] == "q8_0" and report["f16"]["identical_generations"] == report["f16"]["generations"] > 0
    export = Export.all_teams.get(pk=body["id"])
    archive = download(client, export)
    top = body["filename"].removesuffix(".zip")
    assert {f"{top}/model/model.gguf", f"{top}/model/llama_cpp.json", f"{top}/model/verification.json",
            f"{top}/serve.py", f"{top}/Dockerfile", f"{top}/app/tinyforge/llama_cpp.py"} <= set(archive.namelist())
    assert json.loads(archive.read(f"{top}/model/llama_cpp.json")) == {"model": "model.gguf", "lora": None,
                                                                        "gguf_type": "q8_0"}
    assert "quantizing to q8_0" in messages(export) and export.progress == 1.0


def test_a_failed_verification_keeps_the_numbers_and_offers_nothing(acme, alice, client_for, queues, trained_model_dir,
                                                                    monkeypatch):
    # Float arithmetic in another order always moves some logit: a zero tolerance must fail.
    monkeypatch.setattr(onnx_export, "LOGITS_ATOL", 0.0)
    export = export_now(create(client_for(alice), trained_run(acme, trained_model_dir), format="onnx"))
    assert export.status == "failed"
    assert "failed verification" in export.error and "max |logit difference|" in export.error
    assert export.verification["passed"] is False and export.verification["fp32"]["max_abs_logit_diff"] > 0
    assert export.storage_key == "" and export_files(export) == []
    error = Event.all_teams.get(export=export, level="error")
    assert error.data["verification"] == export.verification
    assert_error(client_for(alice).get(f"/api/v1/exports/{export.pk}/download/"), 409, "conflict")


def test_an_int8_model_below_its_quality_budget_fails_unless_kept_anyway_and_then_says_so_everywhere(
        acme, alice, client_for, queues, trained_model_dir, settings):
    settings.EXPORT_MAX_LOSS_INCREASE = -0.5  # no int8 model halves its loss: every one misses
    client = client_for(alice)
    run = trained_run(acme, trained_model_dir)
    refused = export_now(create(client, run, format="onnx", quantize="int8"))
    assert refused.status == "failed" and "misses its quality budget" in refused.error
    assert refused.verification["int8"]["within_budget"] is False and refused.verification["passed"] is False
    assert refused.storage_key == "" and export_files(refused) == []
    assert_error(client.get(f"/api/v1/exports/{refused.pk}/download/"), 409, "conflict")

    kept = export_now(create(client, run, format="onnx", quantize="int8", keep_anyway=True))
    assert kept.status == "succeeded", kept.error
    body = client.get(f"/api/v1/exports/{kept.pk}/").json()
    assert body["keep_anyway"] is True and body["quality_warning"].startswith("KEPT ANYWAY BELOW ITS QUALITY BUDGET")
    assert body["quality_warning"] == body["verification"]["warning"] and body["verification"]["passed"] is False
    assert body["filename"].endswith("-onnx-int8-BELOW-QUALITY-BUDGET.zip")
    archive = download(client, kept)
    readme = next(name for name in archive.namelist() if name.endswith("/README.md"))
    assert "**WARNING: KEPT ANYWAY" in archive.read(readme).decode()
    assert Event.all_teams.filter(export=kept, level="warning", message=body["quality_warning"]).exists()


def test_an_architecture_onnx_does_not_cover_fails_naming_it(acme, alice, client_for, queues):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinymodel import build_tokenizer

    run = TrainingRun.all_teams.create(project=acme.project, name="gpt", dataset_version=acme.version,
                                       base_model="gpt2", status="succeeded")
    run.output_key = storage.run_output_key(acme.project.pk, run.pk)
    tokenizer = build_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(
        storage.path(run.output_key))
    tokenizer.save_pretrained(storage.path(run.output_key))
    run.save()
    export = export_now(create(client_for(alice), run, format="onnx"))
    assert export.status == "failed" and export.checkpoint is None
    assert "does not support the architecture 'GPT2LMHeadModel'" in export.error
    assert export_files(export) == []
    assert any("GPT2LMHeadModel" in m for m in messages(export))


def test_missing_model_files_fail_the_export_with_the_reason(acme, alice, client_for, queues):
    # The persona run's best checkpoint points at a folder that was never written.
    export = export_now(create(client_for(alice), acme.run, format="hf"))
    assert export.status == "failed"
    assert "missing from the data directory (ck)" in export.error


@pytest.mark.parametrize("fields, errors", [
    ({"format": "tflite"}, {"format"}),
    ({"format": "gguf", "quantize": "int8"}, {"quantize"}),
    ({"format": "onnx", "quantize": "q4_k_m"}, {"quantize"}),
    ({"format": "gguf_lora", "quantize": "q8_0"}, {"quantize"}),
    ({"format": "hf", "quantize": "int8", "runtime": "onnx"}, {"quantize", "runtime"}),
    ({"format": "hf_merged", "quantize": "int4"}, {"quantize"}),
    ({"format": "bundle", "quantize": "int8", "runtime": "pytorch"}, {"runtime"}),
    ({"format": "bundle", "quantize": "int8", "runtime": "llama.cpp"}, {"runtime"}),
    ({"format": "bundle", "quantize": "q8_0", "runtime": "onnx"}, {"runtime"}),
    ({"format": "bundle", "quantize": "q4_k_m", "runtime": "pytorch"}, {"runtime"}),
    ({"format": "bundle", "quantize": "q8_0", "runtime": "pytorch", "keep_anyway": True}, {"runtime"}),
    ({"format": "onnx", "runtime": "onnx"}, {"runtime"}),
    ({"format": "onnx", "keep_anyway": True}, {"keep_anyway"}),
    ({}, {"format"}),
])
def test_bad_combinations_are_400_with_every_field_named(acme, alice, client_for, queues, fields, errors):
    error = assert_error(client_for(alice).post("/api/v1/exports/", {"run": acme.run.pk, **fields}, format="json"),
                         400)
    assert set(error["fields"]) == errors
    assert Export.all_teams.filter(run=acme.run).count() == 1  # the persona's own export only
    assert queues[1].count == 0


def test_a_checkpoint_of_another_run_is_refused(acme, alice, client_for, queues):
    other = TrainingRun.all_teams.create(project=acme.project, name="other", dataset_version=acme.version,
                                         base_model="tiny", status="succeeded")
    body = {"run": other.pk, "format": "hf", "checkpoint": acme.checkpoint.pk}
    error = assert_error(client_for(alice).post("/api/v1/exports/", body, format="json"), 400)
    assert set(error["fields"]) == {"checkpoint"}


def test_a_bundle_with_int8_runs_on_onnx_runtime(acme, alice, client_for, queues):
    assert create(client_for(alice), acme.run, format="bundle", quantize="int8").runtime == "onnx"
    assert create(client_for(alice), acme.run, format="bundle").runtime == "pytorch"


def test_a_bundle_of_a_gguf_type_runs_on_llama_cpp(acme, alice, client_for, queues):
    client = client_for(alice)
    assert create(client, acme.run, format="bundle", quantize="q4_k_m").runtime == "llama.cpp"
    f16 = create(client, acme.run, format="bundle", runtime="llama.cpp")
    assert (f16.runtime, f16.quantize) == ("llama.cpp", "none")
    assert jobs.export_filename(f16).endswith("-bundle-llama-cpp-f16.zip")
    error = assert_error(client.post("/api/v1/exports/", {"run": acme.run.pk, "format": "bundle", "quantize": "int8",
                                                          "runtime": "llama.cpp"}, format="json"), 400)
    assert error["fields"]["runtime"] == ["A int8 bundle runs on ONNX Runtime: use runtime onnx, or leave it out."]


def test_a_run_that_failed_or_has_no_checkpoint_is_a_conflict(acme, alice, client_for, queues):
    failed = TrainingRun.all_teams.create(project=acme.project, name="crashed", dataset_version=acme.version,
                                          base_model="tiny", status="failed", error="out of memory")
    error = assert_error(client_for(alice).post("/api/v1/exports/", {"run": failed.pk, "format": "hf"}, format="json"),
                         409, "conflict")
    assert "crashed is failed and has no checkpoint; there is nothing to export" in error["message"]
    running = TrainingRun.all_teams.create(project=acme.project, name="busy", dataset_version=acme.version,
                                           base_model="tiny", status="running")
    assert_error(client_for(alice).post("/api/v1/exports/", {"run": running.pk, "format": "onnx"}, format="json"), 409)
    assert not Export.all_teams.filter(run__in=[failed, running]).exists() and queues[1].count == 0


def test_downloads_wait_for_success(acme, alice, client_for):
    error = assert_error(client_for(alice).get(f"/api/v1/exports/{acme.export.pk}/download/"), 409, "conflict")
    assert "pending" in error["message"]


def test_exports_are_listed_per_run_and_project_within_the_callers_teams(acme, globex, alice, vic, client_for, queues):
    second = TrainingRun.all_teams.create(project=acme.project, name="second", dataset_version=acme.version,
                                          base_model="tiny", status="succeeded")
    mine = create(client_for(alice), second, format="onnx")
    client = client_for(vic)  # viewers see exports
    ids = lambda query: {row["id"] for row in client.get(f"/api/v1/exports/?{query}").json()["results"]}  # noqa: E731
    assert ids("") == {acme.export.pk, mine.pk}
    assert ids(f"run={second.pk}") == {mine.pk}
    assert ids(f"project={acme.project.pk}&export_format=onnx") == {mine.pk}
    assert ids(f"project={globex.project.pk}") == set()
    assert ids("status=pending&export_format=hf&export_format=onnx") == {acme.export.pk, mine.pk}
    assert_error(client.get("/api/v1/exports/?export_format=tflite"), 400)  # gguf is a format now
    assert_error(client.get(f"/api/v1/exports/{globex.export.pk}/"), 404)


def test_viewers_may_not_export_or_delete(acme, vic, client_for, queues):
    assert_error(client_for(vic).post("/api/v1/exports/", {"run": acme.run.pk, "format": "hf"}, format="json"), 403)
    assert_error(client_for(vic).delete(f"/api/v1/exports/{acme.export.pk}/"), 403)


def test_deleting_an_export_removes_its_file(acme, alice, client_for, queues, trained_model_dir):
    export = export_now(create(client_for(alice), trained_run(acme, trained_model_dir), format="hf"))
    assert export.status == "succeeded" and export_files(export)
    assert client_for(alice).delete(f"/api/v1/exports/{export.pk}/").status_code == 204
    assert not Export.all_teams.filter(pk=export.pk).exists() and export_files(export) == []
    assert AuditEvent.all_teams.filter(action="deleted", target_type="export", target_id=str(export.pk)).exists()


def test_an_export_deleted_while_its_job_works_is_abandoned(acme, alice, client_for, queues, trained_model_dir):
    export = create(client_for(alice), trained_run(acme, trained_model_dir), format="hf")
    lifecycle.mark_export_running(export.pk)
    progress = jobs.ExportProgress(export, jobs._export_say(export))
    Export.all_teams.filter(pk=export.pk).delete()
    with pytest.raises(jobs.ExportAbandoned):
        progress("copying the LoRA adapter")


def test_the_reconciler_fails_exports_whose_worker_died_and_requeues_lost_jobs(acme, alice, client_for, queues,
                                                                                 settings):
    stale = create(client_for(alice), acme.run, format="hf")
    lifecycle.mark_export_running(stale.pk)
    silent_since = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 5)
    Export.all_teams.filter(pk=stale.pk).update(heartbeat_at=silent_since)
    leftover = storage.path(storage.export_key(acme.project.pk, stale.pk, "half.zip.partial"))
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half")

    lost = create(client_for(alice), acme.run, format="onnx")
    queues[1].empty()  # Redis lost its data
    Export.all_teams.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    fresh = create(client_for(alice), acme.run, format="bundle")  # may not be enqueued yet: left alone

    done = reconcile("exports")
    assert done == {"retried": [], "failed_lost": [stale.pk], "requeued": [lost.pk], "failed_in_queue": []}
    stale.refresh_from_db()
    assert stale.status == "failed" and "stopped responding" in stale.error and not leftover.exists()
    assert Event.all_teams.filter(export=stale, source="reconciler", level="error").exists()
    assert sorted(queues[1].job_ids) == sorted([f"export-{lost.pk}", f"export-{fresh.pk}"])
    assert Export.all_teams.get(pk=fresh.pk).status == "pending"
    # Once the requeued job has failed without starting, the next pass fails the export.
    queues[1].fetch_job(f"export-{lost.pk}").set_status("failed")
    assert reconcile("exports")["failed_in_queue"] == [lost.pk]
    assert "ended before it started" in Export.all_teams.get(pk=lost.pk).error


BACKEND = Path(__file__).resolve().parents[2] / "backend"


def limit_file_size():
    """In the worker's process: files may not grow past 64 kB. With SIGXFSZ ignored an oversized
    write fails with EFBIG, as a write to a full disk fails with ENOSPC."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))


@pytest.mark.e2e
def test_the_disk_filling_in_a_worker_process_fails_the_export_and_removes_the_partial_file(
        acme, alice, client_for, queues, trained_model_dir, redis_url, tinyforge_data_dir):
    database = connection.settings_dict
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("a worker in another process needs a database it can open: run with DATABASE_URL=postgresql://...")
    url = urlsplit(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1))
    env = {**os.environ, "DATABASE_URL": urlunsplit(url._replace(path=f"/{database['NAME']}")), "REDIS_URL": redis_url,
           "TINYFORGE_DATA_DIR": str(tinyforge_data_dir), "SECRET_KEY": django_settings.SECRET_KEY,
           "PYTHONDONTWRITEBYTECODE": "1"}
    export = create(client_for(alice), trained_run(acme, trained_model_dir), format="hf_merged")
    worker = subprocess.run([sys.executable, "manage.py", "rqworker", "deploy", "--burst"], cwd=BACKEND, env=env,
                            preexec_fn=limit_file_size, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-3000:]
    export.refresh_from_db()
    assert export.status == "failed", (export.status, worker.stderr[-3000:])
    assert "disk filled up" in export.error and "Free some space" in export.error
    assert export.storage_key == "" and export_files(export) == []
    assert Event.all_teams.filter(export=export, level="error", message__contains="disk filled up").exists()
