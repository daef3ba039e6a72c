"""Experiment trackers: a training run mirrored to MLflow or Weights & Biases, never slowed by them.

`TrackingCallback` is a TrainerCallback. The training loop only appends to bounded in-memory
buffers (no I/O on its thread); one thread per tracker sends what piled up every
SEND_SECONDS. A tracker that is unreachable, slow or refuses the credentials costs the run one
warning (through `warn`, on the training thread) and nothing else: after its first failure the
thread stops trying and keeps buffering, and `finish` tries once more to send everything that is
pending before the artifacts and the final status, within a time limit. Buffers are bounded: the
oldest points of a very long run whose tracker stayed down are dropped first (the platform keeps
every point in its own database anyway).

Backends (`Tracker` subclasses) see plain calls: start a run, log params, log metric points, log
an artifact, finish. MLflow's client reads credentials and its retry policy from the process
environment only, so `MlflowTracker` sets them for the span of each call, under a lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tinyforge.ml.train import Progress, TrainerCallback, TrainResult

logger = logging.getLogger(__name__)

# The step metrics a tracker receives (Progress attributes) and the names they get there.
STEP_METRICS = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
                "tokens_per_second": "tokens_per_second"}
SEND_SECONDS = 2.0
# Metric points kept while a tracker is behind or down: 4 curves x 50,000 steps.
MAX_BUFFERED_POINTS = 200_000
# MLflow refuses longer parameter values (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH).
MLFLOW_PARAM_LIMIT = 6000
MLFLOW_BATCH = 1000  # metrics per log_batch call, MLflow's own limit
# One try per call, and a bounded wait: a dead server must not hold the end of a run for minutes
# (MLflow's default is 7 retries with exponential backoff and a 120 s timeout).
MLFLOW_REQUEST_TIMEOUT_SECONDS = 30


class TrackerError(Exception):
    """A tracker refused or could not be reached; the message says which and why."""


@dataclass
class Artifact:
    """A file for the tracker: `source` on disk, or `content` written on the way."""

    name: str  # the path inside the tracked run's artifacts, e.g. "model_card.md" or "model/config.json"
    source: Path | None = None
    content: str | None = None


@dataclass
class TrackedRun:
    """What a tracker is told about the run when it starts."""

    name: str
    params: dict[str, Any]  # the full training config (MLflow gets it flattened, "lora.r")
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrackerLink:
    tracker: str
    run_id: str
    url: str | None
    experiment_id: str | None = None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"lora": {"r": 8}} -> {"lora.r": "8"}: params are flat strings in every tracker."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


class Tracker:
    """One experiment-tracking service. Calls come from one thread at a time; raise TrackerError."""

    name = "tracker"

    def start(self, run: TrackedRun) -> TrackerLink:
        raise NotImplementedError

    def log_params(self, params: dict[str, Any]) -> None:
        """The run's config as it is (nested dicts included)."""
        raise NotImplementedError

    def log_metrics(self, points: list[tuple[int, str, float, int]]) -> None:
        """(step, name, value, timestamp in ms) points."""
        raise NotImplementedError

    def log_artifact(self, artifact: Artifact) -> None:
        raise NotImplementedError

    def finish(self, outcome: str) -> None:
        """outcome: succeeded, failed or cancelled."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# MLflow


_MLFLOW_ENVIRONMENT = threading.Lock()


@dataclass
class MlflowCredentials:
    username: str = ""
    password: str = ""
    token: str = ""


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


class MlflowTracker(Tracker):
    """A run on an MLflow tracking server (http or https). Long param values go to artifacts."""

    name = "mlflow"

    def __init__(self, tracking_uri: str, credentials: MlflowCredentials | None = None, *,
                 experiment: str = "tinyforge"):
        if urlsplit(tracking_uri).scheme not in ("http", "https"):
            raise TrackerError(f"MLflow tracking URI {tracking_uri!r}: only http:// and https:// servers are supported")
        self.tracking_uri = tracking_uri.rstrip("/")
        self.credentials = credentials or MlflowCredentials()
        self.experiment = experiment
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[Any]:
        """An MlflowClient with this tracker's credentials in the environment, errors as TrackerError."""
        with _MLFLOW_ENVIRONMENT:
            saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                                    "MLFLOW_TRACKING_TOKEN", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                                    "MLFLOW_HTTP_REQUEST_TIMEOUT")}
            wanted = {"MLFLOW_TRACKING_USERNAME": self.credentials.username,
                      "MLFLOW_TRACKING_PASSWORD": self.credentials.password,
                      "MLFLOW_TRACKING_TOKEN": self.credentials.token,
                      "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": str(MLFLOW_REQUEST_TIMEOUT_SECONDS)}
            try:
                for key, value in wanted.items():
                    if value:
                        os.environ[key] = value
                    else:
                        os.environ.pop(key, None)
                from mlflow.tracking import MlflowClient

                yield MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            except TrackerError:
                raise
            except Exception as exc:
                raise TrackerError(f"MLflow at {self.tracking_uri}: {what} failed: {_short(exc)}") from exc
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value

    def start(self, run: TrackedRun) -> TrackerLink:
        with self._calls("starting the run") as client:
            experiment = client.get_experiment_by_name(self.experiment)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.experiment)
            created = client.create_run(experiment_id, run_name=run.name, tags=run.tags)
        self.run_id, self.experiment_id = created.info.run_id, experiment_id
        return TrackerLink(self.name, self.run_id, mlflow_run_url(self.tracking_uri, experiment_id, self.run_id),
                           experiment_id)

    def log_params(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = flatten(config)
        short = [Param(k, v) for k, v in params.items() if len(v) <= MLFLOW_PARAM_LIMIT]
        long = {k: v for k, v in params.items() if len(v) > MLFLOW_PARAM_LIMIT}
        with self._calls("logging params") as client:
            for start in range(0, len(short), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(self.run_id, params=short[start:start + 100])
        for key, value in long.items():
            # Whole, as an artifact: MLflow refuses param values over its limit.
            self.log_artifact(Artifact(f"params/{key}.txt", content=value))
        if long:
            with self._calls("logging params") as client:
                client.set_tag(self.run_id, "tinyforge.params_as_artifacts", ",".join(sorted(long)))

    def log_metrics(self, points: list[tuple[int, str, float, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(name, value, timestamp, step) for step, name, value, timestamp in points]
        with self._calls("logging metrics") as client:
            for start in range(0, len(metrics), MLFLOW_BATCH):
                client.log_batch(self.run_id, metrics=metrics[start:start + MLFLOW_BATCH])

    def log_artifact(self, artifact: Artifact) -> None:
        folder, _, filename = artifact.name.rpartition("/")
        with _materialized(artifact, filename) as path, self._calls(f"uploading {artifact.name}") as client:
            client.log_artifact(self.run_id, str(path), artifact_path=folder or None)

    def finish(self, outcome: str) -> None:
        status = {"succeeded": "FINISHED", "cancelled": "KILLED"}.get(outcome, "FAILED")
        with self._calls("finishing the run") as client:
            client.set_terminated(self.run_id, status=status)

    def register_model_version(self, model_name: str, run_id: str, *, source: str, description: str,
                               tags: dict[str, str]) -> str:
        """A new version of `model_name` in the Model Registry (created when missing); returns its number."""
        with self._calls(f"registering a version of model {model_name!r}") as client:
            from mlflow.exceptions import MlflowException

            try:
                client.create_registered_model(model_name, description=f"Deployments named {model_name} on TinyForgeAI")
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = client.create_model_version(model_name, source=source, run_id=run_id, tags=tags,
                                                  description=description, await_creation_for=0)
        return str(version.version)

    def artifact_uri(self, run_id: str) -> str:
        with self._calls("reading the run") as client:
            return client.get_run(run_id).info.artifact_uri


@contextlib.contextmanager
def _materialized(artifact: Artifact, filename: str) -> Iterator[Path]:
    """A file named `filename` holding the artifact (its source file, or its content written out)."""
    if artifact.source is not None and artifact.source.name == filename:
        yield artifact.source
        return
    with tempfile.TemporaryDirectory(prefix="tinyforge-artifact-") as folder:
        path = Path(folder) / filename
        if artifact.source is not None:
            path.symlink_to(artifact.source.resolve())
        else:
            path.write_text(artifact.content or "", encoding="utf-8")
        yield path


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # Client errors wrap the cause: its start says which call, its end why (refused, 401...).
    return text if len(text) <= 400 else f"{text[:200]} ... {text[-200:]}"


# ---------------------------------------------------------------------------------------------
# Weights & Biases


# The run tags that also become W&B tags (short labels, at most 64 characters); all of them are in
# the run's config under "tinyforge".
WANDB_TAGS = ("tinyforge.team", "tinyforge.project", "tinyforge.base_model")


class WandbTracker(Tracker):
    """A W&B run. mode "online" sends to base_url (api.wandb.ai or a self-hosted server);
    "offline" writes the run's files under `directory` for `wandb sync` later (and the tests)."""

    name = "wandb"

    def __init__(self, *, project: str, api_key: str = "", entity: str = "", base_url: str = "",
                 mode: str = "online", directory: Path | None = None):
        if mode not in ("online", "offline"):
            raise TrackerError(f"W&B mode {mode!r}: online or offline")
        if mode == "online" and not api_key:
            raise TrackerError("W&B needs an API key in online mode")
        self.project, self.api_key, self.entity, self.base_url, self.mode = project, api_key, entity, base_url, mode
        self.directory = directory
        self.run = None

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except Exception as exc:
            raise TrackerError(f"W&B: {what} failed: {_short(exc)}") from exc

    def start(self, run: TrackedRun) -> TrackerLink:
        import wandb

        settings = {"silent": True, "console": "off", "x_disable_stats": True, "init_timeout": 30}
        if self.api_key:
            settings["api_key"] = self.api_key
        if self.base_url:
            settings["base_url"] = self.base_url
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.run = self._call("starting the run", lambda: wandb.init(
            project=self.project, entity=self.entity or None, name=run.name, mode=self.mode,
            dir=str(self.directory) if self.directory else None,
            tags=[f"{k}:{v}"[:64] for k, v in run.tags.items() if k in WANDB_TAGS],
            config={"tinyforge": run.tags}, reinit="create_new", settings=wandb.Settings(**settings)))
        url = None if self.mode == "offline" else self.run.url
        return TrackerLink(self.name, self.run.id, url, None)

    def log_params(self, config: dict[str, Any]) -> None:
        self._call("logging the config", lambda: self.run.config.update(config, allow_val_change=True))

    def log_metrics(self, points: list[tuple[int, str, float, int]]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value, _ in points:
            by_step.setdefault(step, {})[name] = value
        for step in sorted(by_step):
            self._call("logging metrics", lambda: self.run.log(by_step[step], step=step))

    def log_artifact(self, artifact: Artifact) -> None:
        # A copy inside the run's own files folder: W&B uploads that folder (or keeps it for
        # `wandb sync` offline), and a file saved from elsewhere is only linked, so it would go
        # missing with its source.
        def save() -> None:
            target = Path(self.run.dir) / artifact.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if artifact.source is not None:
                shutil.copyfile(artifact.source, target)
            else:
                target.write_text(artifact.content or "", encoding="utf-8")
            self.run.save(str(target), base_path=self.run.dir, policy="now")

        self._call(f"saving {artifact.name}", save)

    def finish(self, outcome: str) -> None:
        self._call("finishing the run", lambda: self.run.finish(exit_code=0 if outcome == "succeeded" else 1))


# ---------------------------------------------------------------------------------------------
# feeding trackers off the training loop


class _Feed:
    """One tracker's thread and buffers."""

    def __init__(self, tracker: Tracker, run: TrackedRun, notices: queue.SimpleQueue):
        self.tracker, self.run, self.notices = tracker, run, notices
        self.points: deque[tuple[int, str, float, int]] = deque(maxlen=MAX_BUFFERED_POINTS)
        self.dropped = 0
        self.started = False
        self.params_sent = False
        self.failed = False
        self.warned = False
        self.outcome = "failed"
        self.artifacts: list[Artifact] = []
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"tracker-{tracker.name}", daemon=True)
        self.thread.start()

    def add(self, points: Iterable[tuple[int, str, float, int]]) -> None:
        for point in points:
            if len(self.points) == MAX_BUFFERED_POINTS:
                self.dropped += 1
            self.points.append(point)

    def _send_pending(self) -> None:
        if not self.started:
            link = self.tracker.start(self.run)
            self.started = True
            self.notices.put(("linked", link))
        if not self.params_sent:
            self.tracker.log_params(self.run.params)
            self.params_sent = True
        while self.points:
            batch = [self.points.popleft() for _ in range(min(len(self.points), MLFLOW_BATCH))]
            try:
                self.tracker.log_metrics(batch)
            except BaseException:
                self.points.extendleft(reversed(batch))
                raise

    def _try(self, action: Callable[[], None]) -> bool:
        try:
            action()
            return True
        except Exception as exc:
            self.failed = True
            if not self.warned:
                self.warned = True
                detail = str(exc) if isinstance(exc, TrackerError) else f"{self.tracker.name}: {_short(exc)}"
                self.notices.put(("warning", f"experiment tracking: {detail}; training goes on, and what was not "
                                             "sent is tried again when the run ends"))
            logger.info("tracker %s: %s", self.tracker.name, exc)
            return False

    def _loop(self) -> None:
        while not self.closing.is_set():
            self.wake.wait(SEND_SECONDS)
            self.wake.clear()
            if not self.failed and not self.closing.is_set():
                self._try(self._send_pending)
        # The end: one more try for everything pending, then the artifacts and the final status.
        had_failed = self.failed
        self.failed = False
        if not self._try(self._send_pending):
            return
        for artifact in self.artifacts:
            self._try(lambda: self.tracker.log_artifact(artifact))
        if self._try(lambda: self.tracker.finish(self.outcome)) and had_failed and not self.failed:
            lost = f" ({self.dropped} of the oldest metric points had been dropped)" if self.dropped else ""
            self.notices.put(("info", f"experiment tracking: {self.tracker.name} reachable again at the end of "
                                      f"the run; everything pending was sent{lost}"))

    def close(self, outcome: str, artifacts: list[Artifact]) -> None:
        self.outcome, self.artifacts = outcome, artifacts
        self.closing.set()
        self.wake.set()


class TrackingCallback(TrainerCallback):
    """Mirrors a run to trackers from background threads.

    warn(message): called once per failing tracker, on the training (or finishing) thread.
    on_notice(kind, payload): "linked" with a TrackerLink once a tracker's run exists, "info" with
    a message; also on the training or finishing thread.
    """

    def __init__(self, trackers: Iterable[Tracker], run: TrackedRun, *, warn: Callable[[str], None],
                 on_notice: Callable[[str, Any], None] | None = None):
        self.notices: queue.SimpleQueue = queue.SimpleQueue()
        self.feeds = [_Feed(tracker, run, self.notices) for tracker in trackers]
        self.warn, self.on_notice = warn, on_notice or (lambda kind, payload: None)
        self.finished = False

    def _points(self, progress: Progress, names: dict[str, str]) -> list[tuple[int, str, float, int]]:
        now = int(time.time() * 1000)
        points = []
        for attribute, name in names.items():
            value = getattr(progress, attribute)
            if value is not None and value == value and abs(value) != float("inf"):
                points.append((progress.step, name, float(value), now))
        return points

    def _deliver(self) -> None:
        while True:
            try:
                kind, payload = self.notices.get_nowait()
            except queue.Empty:
                return
            try:
                if kind == "warning":
                    self.warn(payload)
                else:
                    self.on_notice(kind, payload)
            except Exception:  # reporting about tracking must not fail the run either
                logger.exception("could not record a tracking notice")

    def on_step(self, progress: Progress) -> None:
        points = self._points(progress, STEP_METRICS)
        for feed in self.feeds:
            feed.add(points)
        self._deliver()

    def on_evaluate(self, progress: Progress) -> None:
        points = self._points(progress, {"eval_loss": "eval_loss"})
        for feed in self.feeds:
            feed.add(points)
            feed.wake.set()
        self._deliver()

    def on_checkpoint(self, path, step, eval_loss, is_best) -> None:
        self._deliver()

    def on_end(self, result: TrainResult) -> None:
        self._deliver()

    def finish(self, outcome: str, artifacts: list[Artifact], timeout: float) -> bool:
        """Send what is pending, the artifacts and the final status, waiting at most `timeout`
        seconds in all. Returns False when a tracker was still busy at the deadline (its thread
        goes on in the background while the process lives)."""
        if self.finished:
            return True
        self.finished = True
        for feed in self.feeds:
            feed.close(outcome, artifacts)
        deadline = time.monotonic() + timeout
        done = True
        for feed in self.feeds:
            feed.thread.join(max(0.0, deadline - time.monotonic()))
            if feed.thread.is_alive():
                done = False
                if not feed.warned:
                    feed.warned = True
                    self.notices.put(("warning", f"experiment tracking: {feed.tracker.name} was still sending when "
                                                 f"the run ended ({timeout:.0f} s later); it goes on in the background"))
        self._deliver()
        return done


def model_artifacts(model_dir: Path, prefix: str = "model") -> list[Artifact]:
    """The files of a model folder (its checkpoints and temporary files left out)."""
    return [Artifact(f"{prefix}/{path.relative_to(model_dir).as_posix()}", source=path)
            for path in sorted(model_dir.rglob("*"))
            if path.is_file() and not any(part.startswith(".") or part == "checkpoints" or part.endswith(".partial")
                                          for part in path.relative_to(model_dir).parts)]
