"""Training runs and deployments of the platform mirrored to a real MLflow server and to W&B
(offline): the train job and the deploy job called as a worker calls them."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from mlflow_server import free_port
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.deployments.jobs import deploy
from tinyforge.deployments.models import Deployment
from tinyforge.tracking.models import TeamTracking, TrackedRun
from tinyforge.training import jobs as training_jobs
from tinyforge.training.jobs import train_run
from tinyforge.training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


def use_mlflow(team, url, username, password, **fields) -> TeamTracking:
    tracking = TeamTracking(team=team, mlflow_tracking_uri=url, mlflow_username=username, **fields)
    tracking.set_secrets({"mlflow_password": password})
    tracking.save()
    return tracking


def tracking_events(run, level=None):
    events = Event.all_teams.filter(run=run, source="tracking")
    return list(events.filter(level=level) if level else events)


def test_a_run_is_in_mlflow_with_its_config_curves_tags_and_artifacts_and_its_deployment_in_the_registry(
        mlflow_server, make_run, acme, settings):
    settings.PUBLIC_URL = "https://tinyforge.example.com"
    use_mlflow(acme.team, mlflow_server.url, mlflow_server.username, mlflow_server.password)
    run = make_run(max_steps=6)
    assert train_run(run.pk, 1) == "succeeded"
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert tracking_events(run, "warning") == []
    tracked = TrackedRun.all_teams.get(run=run, tracker="mlflow")
    assert tracked.url == f"{mlflow_server.url}/#/experiments/{tracked.experiment_id}/runs/{tracked.external_id}"

    client = mlflow_server.client()
    remote = client.get_run(tracked.external_id)
    assert remote.info.status == "FINISHED"
    assert client.get_experiment(tracked.experiment_id).name == f"tinyforge/{acme.team.slug}/{acme.project.name}"
    assert remote.data.params["max_steps"] == "6" and remote.data.params["learning_rate"] == "0.003"
    assert remote.data.params["base_model"] == run.base_model
    tags = remote.data.tags
    assert tags["tinyforge.team"] == acme.team.slug and tags["tinyforge.project"] == acme.project.name
    assert tags["tinyforge.run_id"] == str(run.pk)
    assert tags["tinyforge.run_url"] == f"https://tinyforge.example.com/projects/{acme.project.pk}/runs/{run.pk}"
    assert tags["tinyforge.dataset_sha256"] == run.dataset_version.sha256 and len(run.dataset_version.sha256) == 64
    assert tags["tinyforge.dataset_version"] == str(run.dataset_version.number)
    assert tags["tinyforge.base_model"] == run.base_model
    for name in ("loss", "learning_rate", "grad_norm", "tokens_per_second"):
        assert [m.step for m in client.get_metric_history(tracked.external_id, name)] == [1, 2, 3, 4, 5, 6], name
    assert [m.step for m in client.get_metric_history(tracked.external_id, "eval_loss")] == [3, 6]
    artifacts = {a.path for a in client.list_artifacts(tracked.external_id)}
    assert {"model_card.md", "eval_results.json", "validation_report.json"} <= artifacts
    assert "model" not in artifacts  # the model folder only when asked

    checkpoint = run.best_checkpoint()
    deployment = Deployment.all_teams.create(team=acme.team, project=acme.project, run=run, checkpoint=checkpoint,
                                             name="zorbland-helper")
    assert deploy(deployment.pk) != "failed"
    versions = client.search_model_versions("name='zorbland-helper'")
    assert len(versions) == 1
    version = versions[0]
    assert version.run_id == tracked.external_id
    assert version.tags["tinyforge.deployment"] == "zorbland-helper"
    link = f"https://tinyforge.example.com/projects/{acme.project.pk}/services?deployment={deployment.pk}"
    assert version.tags["tinyforge.deployment_url"] == link and link in version.description
    said = list(Event.all_teams.filter(deployment=deployment).values_list("message", flat=True))
    assert any(m.startswith("registered in MLflow's Model Registry as zorbland-helper version 1") for m in said)


def test_the_model_folder_is_uploaded_when_asked(mlflow_server, make_run, acme):
    use_mlflow(acme.team, mlflow_server.url, mlflow_server.username, mlflow_server.password, log_model=True)
    run = make_run(max_steps=2, eval_steps=2, save_steps=2)
    assert train_run(run.pk, 1) == "succeeded"
    tracked = TrackedRun.all_teams.get(run=run, tracker="mlflow")
    files = {a.path for a in mlflow_server.client().list_artifacts(tracked.external_id, "model")}
    assert {"model/tinyforge.json", "model/adapter_model.safetensors", "model/README.md"} <= files
    assert not any("checkpoint" in path for path in files)


class StopServerAtStep:
    """Registered like the tracking app's own factory: shuts the gate once the run exists on the
    MLflow server. (Not once its TrackedRun row exists: notices become rows on the training thread,
    in a later callback, so waiting for the row inside on_step waited for nothing until its deadline.)"""

    def __init__(self, gate, step, server):
        self.gate, self.step, self.server = gate, step, server

    def __call__(self, run, attempt, recorder):
        from tinyforge.ml.train import TrainerCallback

        gate, step, server = self.gate, self.step, self.server

        def run_exists() -> bool:
            client = server.client()
            experiments = [e.experiment_id for e in client.search_experiments()]
            return bool(experiments) and bool(client.search_runs(
                experiments, filter_string=f"tags.`tinyforge.run_id` = '{run.pk}'"))

        class Stop(TrainerCallback):
            def on_step(self, progress):
                if progress.step == step:
                    deadline = time.monotonic() + 60
                    while not run_exists():
                        assert time.monotonic() < deadline, "the run never appeared on the MLflow server"
                        time.sleep(0.05)
                    gate.shut()

            def attempt_ended(self, outcome):
                pass

        return Stop()


def test_a_server_stopped_mid_run_costs_the_run_one_warning_event_and_nothing_else(
        mlflow_server, port_gate, make_run, acme, monkeypatch):
    use_mlflow(acme.team, port_gate.url, mlflow_server.username, mlflow_server.password)
    monkeypatch.setattr(training_jobs, "RUN_CALLBACK_FACTORIES",
                        [*training_jobs.RUN_CALLBACK_FACTORIES, StopServerAtStep(port_gate, 2, mlflow_server)])
    run = make_run(max_steps=8)
    assert train_run(run.pk, 1) == "succeeded"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress_step == 8
    warnings = tracking_events(run, "warning")
    assert len(warnings) == 1, [w.message for w in warnings]
    assert warnings[0].message.startswith(f"experiment tracking: MLflow at {port_gate.url}")
    assert loss_curve_is_complete(run, 8)


def loss_curve_is_complete(run, steps) -> bool:
    from tinyforge.training.models import RunMetric

    return list(RunMetric.all_teams.filter(run=run, name="loss").values_list("step", flat=True)) == list(range(1, steps + 1))


@pytest.mark.parametrize("case", ["wrong password", "nobody listens"])
def test_a_tracker_that_refuses_or_cannot_be_reached_costs_one_warning(case, mlflow_server, make_run, acme):
    if case == "wrong password":
        use_mlflow(acme.team, mlflow_server.url, mlflow_server.username, "not-the-password")
        expected = "401"
    else:
        use_mlflow(acme.team, f"http://127.0.0.1:{free_port()}", "someone", "secret")
        expected = "Connection refused"
    run = make_run(max_steps=3)
    assert train_run(run.pk, 1) == "succeeded"
    assert TrainingRun.all_teams.get(pk=run.pk).status == "succeeded"
    warnings = tracking_events(run, "warning")
    assert len(warnings) == 1 and expected in warnings[0].message, [w.message for w in warnings]
    assert not TrackedRun.all_teams.filter(run=run).exists()


# ---------------------------------------------------------------------------------------------
# Weights & Biases, offline


def wandb_records(path: Path):
    """The records of a W&B run file (its LevelDB-style log: 32 KiB blocks of checksummed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending, block = 7, b"", 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position:position + 7])
        position += 7
        if kind == 0:
            position += left - 7
            continue
        if position + length > len(data):
            return  # a chunk still being written
        chunk, position = data[position:position + length], position + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_files_hold_the_runs_metrics_config_and_artifacts(make_run, acme, settings):
    pytest.importorskip("wandb", reason="wandb is not installed: pip install -e 'backend[dev]' (make venv)")
    settings.WANDB_MODE = "offline"
    run = make_run(max_steps=4, eval_steps=2)
    assert train_run(run.pk, 1) == "succeeded"
    assert tracking_events(run, "warning") == []
    folder = storage.path(f"{storage.run_key(run.project_id, run.pk)}/wandb")
    [run_file] = folder.glob("wandb/offline-run-*/run-*.wandb")
    # W&B's own service process writes the file and may still be flushing it when finish() returns.
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_file)):
        assert time.monotonic() < deadline, "the W&B run file never got its exit record"
        time.sleep(0.2)
    history, config, tags = {}, {}, []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(values["_step"], {}).update(values)
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "run":
            tags = list(record.run.tags)
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    assert sorted(history) == [1, 2, 3, 4]
    assert all({"loss", "learning_rate", "grad_norm", "tokens_per_second"} <= set(history[s]) for s in history)
    assert "eval_loss" in history[2] and "eval_loss" in history[4]
    assert config["max_steps"] == 4 and config["tinyforge"]["tinyforge.run_id"] == str(run.pk)
    assert f"tinyforge.team:{acme.team.slug}" in tags
    files = {p.name for p in run_file.parent.glob("files/**/*")}
    assert {"model_card.md", "validation_report.json"} <= files
    assert TrackedRun.all_teams.get(run=run, tracker="wandb").url == ""
