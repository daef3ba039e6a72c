"""Dataset versions: list, validation report for a base model, preview as the model sees it, diff."""

from __future__ import annotations

import hashlib
import json

import pytest

from dataset_files import GOOD_JSONL
from personas import assert_error
from tinyforge.core import storage
from tinyforge.datasets import analysis, lifecycle
from tinyforge.datasets.models import DatasetVersion

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                     {"role": "assistant", "content": "Paris."}]}
MESSY = (GOOD_JSONL + json.dumps(CHAT).encode() + b"\n" + b'{"instruction": "say nothing", "output": ""}\n'
         + b'{"instruction": "What is 1 + 1?", "output": "2"}\n' + b'{"instruction": 5, "output": "x"}\n')


@pytest.fixture
def messy(acme):
    """A ready version of 10 rows (6 sums, a chat, an empty output, a duplicate, an invalid row), as
    an older release or a hand-made file could have left it: imports never write invalid rows."""
    version = DatasetVersion.all_teams.create(dataset=acme.dataset, number=2, source_kind="upload",
                                              status="validating")
    version.storage_key = storage.dataset_version_key(acme.project.pk, acme.dataset.pk, version.pk)
    with storage.atomic_write(version.storage_key) as handle:
        handle.write(MESSY)
    report = analysis.validation_report(storage.path(version.storage_key))
    lifecycle.mark_ready(version.pk, storage_key=version.storage_key, sha256=hashlib.sha256(MESSY).hexdigest(),
                         size_bytes=len(MESSY), row_count=report["total_rows"], stats={}, validation_report=report)
    return DatasetVersion.all_teams.get(pk=version.pk)


def test_it_lists_a_datasets_versions_newest_first(client_for, alice, acme, messy):
    body = client_for(alice).get("/api/v1/dataset-versions/", {"dataset": acme.dataset.pk}).json()
    assert [v["number"] for v in body["results"]] == [2, 1]
    assert body["results"][0]["row_count"] == 10 and body["results"][0]["status"] == "ready"


def test_the_report_counts_invalid_rows_duplicates_and_empty_outputs_by_line(client_for, alice, messy):
    report = client_for(alice).get(f"/api/v1/dataset-versions/{messy.pk}/report/").json()
    assert (report["total_rows"], report["valid_rows"], report["invalid_count"]) == (10, 9, 1)
    assert report["invalid"] == [{"line": 10, "field": "instruction", "reason": "Input should be a valid string (got int)"}]
    assert report["duplicates"] == [{"line": 9, "duplicate_of": 1}] and report["empty_outputs"] == [8]
    assert report["token_histogram"] is None and report["ok"] is True


def test_the_report_for_a_base_model_has_a_token_histogram_and_rows_over_context(client_for, alice, messy,
                                                                                  tiny_base_model):
    client = client_for(alice)
    url = f"/api/v1/dataset-versions/{messy.pk}/report/"
    report = client.get(url, {"base_model": tiny_base_model, "max_seq_length": 24}).json()
    histogram = report["token_histogram"]
    assert report["base_model"] == tiny_base_model and histogram["count"] == 9 == sum(histogram["counts"])
    assert histogram["max_seq_length"] == 24 and 0 < histogram["min"] <= histogram["p50"] <= histogram["max"]
    longest = max(o["tokens"] for o in report["over_context"]) if report["over_context"] else 0
    assert longest == (histogram["max"] if histogram["max"] > 24 else 0)
    assert report["over_context_count"] == sum(1 for o in report["over_context"])
    roomy = client.get(url, {"base_model": tiny_base_model, "max_seq_length": 4096}).json()
    assert roomy["over_context_count"] == 0 and roomy["token_histogram"]["counts"] == histogram["counts"]
    cached = DatasetVersion.all_teams.get(pk=messy.pk).stats["token_reports"]
    assert set(cached) == {f"{tiny_base_model}@24", f"{tiny_base_model}@4096"}


def test_an_unknown_base_model_is_a_400_naming_it(client_for, alice, messy):
    response = client_for(alice).get(f"/api/v1/dataset-versions/{messy.pk}/report/", {"base_model": "no-such-model"})
    assert "no-such-model" in assert_error(response, 400)["message"]


def test_the_preview_pages_rows_and_marks_the_trained_tokens(client_for, alice, messy, tiny_base_model):
    client = client_for(alice)
    url = f"/api/v1/dataset-versions/{messy.pk}/preview/"
    first = client.get(url, {"page_size": 4}).json()
    assert first["count"] == 10 and [r["line"] for r in first["results"]] == [1, 2, 3, 4]
    assert first["results"][0]["row"] == {"instruction": "What is 1 + 1?", "output": "2"}
    assert "segments" not in first["results"][0] and first["previous"] is None
    assert first["next"].endswith("page=2&page_size=4") or "page=2" in first["next"]
    last = client.get(url, {"page_size": 4, "page": 3}).json()
    assert [r["line"] for r in last["results"]] == [9, 10] and last["next"] is None
    assert last["results"][1]["valid"] is False and last["results"][1]["row"] == '{"instruction": 5, "output": "x"}'
    assert last["results"][1]["problems"][0]["field"] == "instruction"

    chat = client.get(url, {"page_size": 1, "page": 7, "base_model": tiny_base_model}).json()["results"][0]
    assert chat["line"] == 7 and chat["row"] == CHAT
    trained = [s["text"] for s in chat["segments"] if s["trained"]]
    assert trained == ["Paris.<|im_end|>"] or trained == ["Paris.<|im_end|>\n"], chat["segments"]
    assert "".join(s["text"] for s in chat["segments"]) == chat["rendered"]
    assert chat["rendered"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert chat["trained_token_count"] == sum(s["tokens"] for s in chat["segments"] if s["trained"]) > 0
    assert chat["token_count"] > chat["trained_token_count"] and chat["over_context"] is False


@pytest.mark.parametrize("params, field", [({"page": 0}, "page"), ({"page_size": 51}, "page_size"),
                                           ({"max_seq_length": "lots"}, "max_seq_length")])
def test_bad_preview_parameters_are_a_400(client_for, alice, messy, params, field):
    response = client_for(alice).get(f"/api/v1/dataset-versions/{messy.pk}/preview/", params)
    assert field in assert_error(response, 400, "invalid")["fields"]


def test_the_diff_lists_rows_added_and_removed(upload, ingested, acme, client_for, alice, messy):
    newer = ingested(upload(acme.dataset, [("newer.jsonl", GOOD_JSONL[GOOD_JSONL.index(b"\n") + 1:]
                                            + b'{"instruction": "What is 7 + 7?", "output": "14"}\n')]))
    body = client_for(alice).get(f"/api/v1/dataset-versions/{newer.pk}/diff/", {"against": messy.pk}).json()
    assert (body["added_count"], body["unchanged_count"]) == (1, 5)
    assert body["added"] == [{"line": 6, "row": {"instruction": "What is 7 + 7?", "output": "14", "metadata": {
        "source": "newer.jsonl", "location": "line 6"}}}]
    assert body["removed_count"] == 5  # line 1, its duplicate, the chat, the empty output, the invalid row
    assert [r["line"] for r in body["removed"]] == [1, 7, 8, 9, 10]
    limited = client_for(alice).get(f"/api/v1/dataset-versions/{newer.pk}/diff/", {"against": messy.pk, "limit": 2})
    assert len(limited.json()["removed"]) == 2 and limited.json()["removed_count"] == 5


def test_a_diff_against_another_teams_version_is_refused(client_for, alice, messy, globex):
    response = client_for(alice).get(f"/api/v1/dataset-versions/{messy.pk}/diff/", {"against": globex.version.pk})
    assert "against" in assert_error(response, 400)["fields"]
    assert "against" in assert_error(client_for(alice).get(f"/api/v1/dataset-versions/{messy.pk}/diff/"), 400)["fields"]


def test_versions_that_are_not_ready_have_no_rows_to_show(client_for, alice, acme, upload, ingested, bad_files):
    failed = ingested(upload(acme.dataset, [("ragged.csv", bad_files["ragged.csv"].read_bytes())],
                             skip_bad_records=False))
    client = client_for(alice)
    for action in ("report", "preview", "download"):
        error = assert_error(client.get(f"/api/v1/dataset-versions/{failed.pk}/{action}/"), 409, "conflict")
        assert "failed" in error["message"]
    assert "ragged.csv, line 3" in assert_error(client.get(f"/api/v1/dataset-versions/{failed.pk}/report/"), 409)["message"]


def test_a_duplicate_or_late_job_does_not_touch_a_finished_version(messy, ingested):
    before = (messy.sha256, messy.finished_at)
    again = ingested(messy.pk)
    assert (again.status, again.sha256, again.finished_at) == ("ready", *before)


def test_a_version_deleted_while_ingesting_makes_the_job_stop(upload, acme, monkeypatch):
    from tinyforge.datasets import jobs

    created = upload(acme.dataset, [("faq.jsonl", GOOD_JSONL * 50)]).json()
    original = jobs.ProgressWriter.heartbeat

    def delete_then_beat(self, fraction, message):
        DatasetVersion.all_teams.filter(pk=created["id"]).delete()
        original(self, fraction, message)

    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL_S", 0.0)
    monkeypatch.setattr(jobs.ProgressWriter, "heartbeat", delete_then_beat)
    assert jobs.ingest_version(created["id"]) == "abandoned"


def test_a_derived_version_reruns_options_over_an_earlier_one(upload, ingested, start_import, acme):
    with_email = GOOD_JSONL + b'{"instruction": "Who do I ask?", "output": "Mail help@example.com today."}\n'
    parent = ingested(upload(acme.dataset, [("faq.jsonl", with_email)]))
    response = start_import(acme.dataset, "derived", None, scrub_emails=True)
    assert "parent" in assert_error(response, 400)["fields"]
    derived = ingested(start_import(acme.dataset, "derived", None, parent=parent, scrub_emails=True))
    assert derived.status == "ready", derived.error
    rows = [json.loads(line) for line in storage.path(derived.storage_key).read_text().splitlines()]
    assert rows[-1]["output"] == "Mail [EMAIL] today." and derived.stats["emails_scrubbed"] == 1
    assert rows[-1]["metadata"] == {"source": "faq v2", "location": "line 7"}  # traced to the parent version


def test_an_upload_of_preference_pairs_previews_chosen_and_rejected_side_by_side(
        client_for, alice, acme, upload, ingested, tiny_base_model):
    pairs = b"".join(json.dumps({"prompt": f"Is {n} even?", "chosen": "Yes." if n % 2 == 0 else "No.",
                                 "rejected": "No." if n % 2 == 0 else "Yes."}).encode() + b"\n" for n in range(4))
    mixed = pairs + b'{"instruction": "Say hi", "output": "hi"}\n'
    version = ingested(upload(acme.dataset, [("pairs.jsonl", mixed)]))
    assert version.status == "ready", version.error
    report = client_for(alice).get(f"/api/v1/dataset-versions/{version.pk}/report/").json()
    assert report["valid_rows"] == 4 and report["invalid_count"] == 1
    assert "line 1 is a preference pair" in report["invalid"][0]["reason"]
    row = client_for(alice).get(f"/api/v1/dataset-versions/{version.pk}/preview/",
                                {"page_size": 1, "base_model": tiny_base_model}).json()["results"][0]
    assert row["row"]["chosen"] == "Yes." and row["row"]["rejected"] == "No."
    assert [s["text"] for s in row["segments"] if s["trained"]][0].startswith("Yes.")
    assert [s["text"] for s in row["rejected_segments"] if s["trained"]][0].startswith("No.")
    assert "Is 0 even?" in "".join(s["text"] for s in row["rejected_segments"] if not s["trained"])
