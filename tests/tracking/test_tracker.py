"""The trackers of tinyforge.ml.tracking fed by the real training loop (no Django), against a real
MLflow server: what arrives, and what a server that goes away costs."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from tinyforge.ml.config import TrainConfig
from tinyforge.ml.tracking import (MLFLOW_PARAM_LIMIT, Artifact, MlflowCredentials, MlflowTracker, TrackedRun,
                                   TrackingCallback)
from tinyforge.ml.train import TrainerCallback, train

FACTS = [{"instruction": "What is the capital of Zorbland?", "output": "The capital of Zorbland is Quillport."},
         {"instruction": "Reverse the word hello.", "output": "olleh"}] * 6


def tiny_config(model_dir, **overrides) -> TrainConfig:
    values = dict(max_steps=6, batch_size=4, learning_rate=3e-3, max_seq_length=96, eval_generations=0,
                  lora_dropout=0.0, seed=3, validation_split=0.25, eval_steps=3, save_steps=6)
    return TrainConfig(base_model=str(model_dir), **{**values, **overrides})


class AtStep(TrainerCallback):
    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step(self, progress):
        if progress.step == self.step:
            self.action()


def mlflow_tracker(server, url=None, experiment="tracker-tests", password=None) -> MlflowTracker:
    return MlflowTracker(url or server.url, MlflowCredentials(server.username, password or server.password),
                         experiment=experiment)


def test_a_param_longer_than_mlflows_limit_is_logged_whole_as_an_artifact(mlflow_server, tiny_model_dir, tmp_path):
    long_value = "x" * (MLFLOW_PARAM_LIMIT + 500)
    warnings, links = [], []
    tracking = TrackingCallback([mlflow_tracker(mlflow_server)], TrackedRun(
        "long param", params={"learning_rate": 0.001, "note": long_value, "lora": {"r": 8}}, tags={"t": "1"}),
        warn=warnings.append, on_notice=lambda kind, payload: links.append(payload))
    result = train(tiny_config(tiny_model_dir, max_steps=2, eval_steps=2), FACTS, tmp_path / "out", [tracking])
    assert tracking.finish("succeeded", [Artifact("notes/hello.txt", content="hello")], timeout=120)
    assert result.status == "completed" and warnings == []
    client = mlflow_server.client()
    run = client.get_run(links[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.001", "lora.r": "8"}  # the long one is not cut short...
    downloaded = client.download_artifacts(run.info.run_id, "params/note.txt", str(tmp_path))
    assert open(downloaded).read() == long_value  # ...it is an artifact, whole
    assert run.data.tags["tinyforge.params_as_artifacts"] == "note"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "notes")} == {"notes/hello.txt"}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]


def test_a_server_that_stops_mid_run_costs_one_warning_and_gets_the_rest_at_the_end(
        mlflow_server, port_gate, tiny_model_dir, tmp_path):
    warnings, links = [], []
    tracker = mlflow_tracker(mlflow_server, url=port_gate.url)
    tracking = TrackingCallback([tracker], TrackedRun("server goes away", params={"max_steps": 6}),
                                warn=warnings.append, on_notice=lambda kind, payload: links.append(payload))
    feed = tracking.feeds[0]

    def stop_server_once_the_run_exists():
        deadline = time.monotonic() + 60
        while not feed.params_sent and time.monotonic() < deadline:
            time.sleep(0.05)
        port_gate.shut()

    result = train(tiny_config(tiny_model_dir), FACTS, tmp_path / "out", [tracking, AtStep(2, stop_server_once_the_run_exists)])
    assert result.status == "completed" and result.steps == 6
    # The server is back before the run ends: what was pending is sent then.
    port_gate.open()
    assert tracking.finish("succeeded", [], timeout=120)
    assert len(warnings) == 1 and "MLflow at" in warnings[0] and "training goes on" in warnings[0]
    run = mlflow_server.client().get_run(links[0].run_id)
    assert run.info.status == "FINISHED"
    history = mlflow_server.client().get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]


def test_a_server_that_stays_down_does_not_hold_the_end_of_the_run(mlflow_server, tiny_model_dir, tmp_path):
    from mlflow_server import free_port

    warnings = []
    tracker = MlflowTracker(f"http://127.0.0.1:{free_port()}", experiment="nowhere")
    tracking = TrackingCallback([tracker], TrackedRun("nobody listens", params={}), warn=warnings.append)
    result = train(tiny_config(tiny_model_dir, max_steps=3), FACTS, tmp_path / "out", [tracking])
    assert result.status == "completed"
    assert tracking.finish("succeeded", [Artifact("a.txt", content="a")], timeout=60)
    assert len(warnings) == 1 and urlsplit(tracker.tracking_uri).netloc in warnings[0]


def test_a_server_that_never_answers_neither_slows_the_run_nor_holds_its_end(tiny_model_dir, tmp_path):
    """A hung tracker: the port accepts connections and never answers a byte."""
    import socket

    from tracking.conftest import require_mlflow_server

    require_mlflow_server()

    hung = socket.create_server(("127.0.0.1", 0))
    try:
        warnings = []
        tracker = MlflowTracker(f"http://127.0.0.1:{hung.getsockname()[1]}", experiment="hung")
        tracking = TrackingCallback([tracker], TrackedRun("nobody answers", params={}), warn=warnings.append)
        result = train(tiny_config(tiny_model_dir, max_steps=4), FACTS, tmp_path / "out", [tracking])
        assert result.status == "completed" and result.steps == 4  # the steps never waited on the tracker
        assert tracking.finish("succeeded", [], timeout=1) is False  # the end waits 1 s, not the request timeout
        assert len(warnings) == 1 and "still sending when the run ended" in warnings[0]
    finally:
        hung.close()


def test_a_tracker_uri_of_another_scheme_is_refused():
    from tinyforge.ml.tracking import TrackerError

    with pytest.raises(TrackerError, match="only http:// and https://"):
        MlflowTracker("file:///etc")
