"""The evaluation job (queue `eval`): resolve the targets and the judge, run tinyforge.evaluation
over the eval set version, and write the results chunk by chunk, so a failure keeps what finished."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections
from rq import get_current_job

from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.heartbeat import Heartbeat
from tinyforge.core.models import EventLevel
from tinyforge.errors import TinyforgeError
from tinyforge.evals import lifecycle, services
from tinyforge.evals.models import EvalResult, EvalStatus, Evaluation, Gate, Purpose

logger = logging.getLogger(__name__)


def evaluate(evaluation_id: int) -> str:
    job = get_current_job()
    try:
        lifecycle.claim(evaluation_id, job_id=job.id if job else "")
    except lifecycle.InvalidTransition as exc:
        logger.info("eval job for evaluation %s skipped: %s", evaluation_id, exc)
        return "skipped"
    evaluation = Evaluation.all_teams.select_related("eval_set_version", "project", "run").get(pk=evaluation_id)
    try:
        with Heartbeat(lambda: lifecycle.record_heartbeat(evaluation_id), f"heartbeat-eval-{evaluation_id}"):
            return _evaluate(evaluation)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, TinyforgeError) else f"{type(exc).__name__}: {exc}"
        done = EvalResult.all_teams.filter(evaluation_id=evaluation_id).count()
        try:
            lifecycle.mark_failed(evaluation_id, message)
        except lifecycle.InvalidTransition:
            return "skipped"
        links = evaluation.event_links()
        links["data"] = {**links["data"], "traceback": "".join(traceback.format_exception(exc))}
        record_event(**links, source="worker", level=EventLevel.ERROR,
                     message=f"failed after {done} of {evaluation.row_count} rows (kept): {message}")
        if isinstance(exc, TinyforgeError):
            return "failed"
        raise
    finally:
        close_old_connections()


def _evaluate(evaluation: Evaluation) -> str:
    from tinyforge.evaluation.endpoints import Endpoint
    from tinyforge.evaluation.judges import JudgeConfig
    from tinyforge.evaluation.runner import EvalConfig, evaluate as run_evaluation
    from tinyforge.evaluation.scorers import Scorer

    rows = services.read_version_rows(evaluation.eval_set_version)
    targets = [_target(t) for t in evaluation.targets]
    judge = judge_endpoint = None
    if evaluation.judge:
        spec = evaluation.judge
        judge = JudgeConfig(mode=spec["mode"], prompt=spec["prompt"], rubric=spec["rubric"],
                            max_tokens=spec["max_tokens"])
        judge_endpoint = _endpoint(spec["target"], concurrency=settings.EVAL_JUDGE_CONCURRENCY)
    config = EvalConfig(scorers=tuple(Scorer.from_dict(s) for s in evaluation.scorers), judge=judge,
                        judge_endpoint=judge_endpoint, max_tokens=evaluation.max_tokens,
                        chunk_rows=settings.EVAL_CHUNK_ROWS)
    EvalResult.all_teams.filter(evaluation=evaluation).delete()  # a job delivered again starts over
    labels = [t["label"] for t in evaluation.targets]
    written = 0

    def on_chunk(results, pairs):
        nonlocal written
        EvalResult.all_teams.bulk_create(_records(evaluation, rows, labels, results, pairs))
        written += len({r.index for r in results})
        lifecycle.record_progress(evaluation.pk, written)

    def should_stop() -> bool:
        return Evaluation.all_teams.filter(pk=evaluation.pk).values_list("status", flat=True).first() != EvalStatus.RUNNING

    record_event(**evaluation.event_links(), source="worker",
                 message=f"answering {len(rows)} rows with {', '.join(labels)}")
    summary = run_evaluation(rows, targets, config, on_chunk=on_chunk, should_stop=should_stop)
    if should_stop():
        record_event(**evaluation.event_links(), source="worker", message=f"stopped after {written} rows")
        return "cancelled"
    gate_passed, gate_reason = None, ""
    if evaluation.purpose == Purpose.GATE:
        gate = Gate.all_teams.get(project_id=evaluation.project_id)
        gate_passed, gate_reason = services.gate_verdict(gate, summary.to_dict(), evaluation.targets)
    lifecycle.mark_succeeded(evaluation.pk, summary=summary.to_dict(), rows_done=written, gate_passed=gate_passed,
                             gate_reason=gate_reason)
    verdict = "" if gate_passed is None else f"; {'passes' if gate_passed else 'fails'} the gate: {gate_reason}"
    record_event(**evaluation.event_links(), source="worker", message=f"succeeded: {written} rows{verdict}")
    return "succeeded"


def _records(evaluation, rows, labels, results, pairs) -> list[EvalResult]:
    by_index: dict[int, dict] = {}
    for r in results:
        by_index.setdefault(r.index, {})[r.target] = {
            "answer": r.answer.text, "error": r.answer.error, "scores": r.scores, "passed": r.passed,
            "judge": r.judge.to_dict() if r.judge else None, "prompt_tokens": r.answer.prompt_tokens,
            "completion_tokens": r.answer.completion_tokens, "latency_ms": round(r.answer.latency_s * 1000, 1)}
    pairwise: dict[int, list] = {}
    for p in pairs:
        pairwise.setdefault(p.index, []).append({"first": p.first, "second": p.second, **p.verdict.to_dict()})
    records = []
    for index, answers in sorted(by_index.items()):
        row = rows[index]
        records.append(EvalResult(
            evaluation=evaluation, index=index, input=row.model_dump(mode="json")["input"], reference=row.reference,
            must_include=row.must_include, tags=row.tags, tags_text="".join(f"|{t}" for t in row.tags) + "|",
            answers=answers, pairwise=pairwise.get(index, []),
            regression=_regression(labels, answers), disagreement=_disagreement(labels, answers, pairwise.get(index, []))))
    return records


def _regression(labels: list[str], answers: dict) -> bool:
    """An earlier target passed a score that a later target fails."""
    keys = {key for a in answers.values() for key in a["passed"]}
    for key in keys:
        verdicts = [answers[label]["passed"].get(key) for label in labels if label in answers]
        if any(v is True and any(w is False for w in verdicts[i + 1:]) for i, v in enumerate(verdicts)):
            return True
    return False


def _disagreement(labels: list[str], answers: dict, pairwise: list) -> bool:
    keys = {key for a in answers.values() for key in a["passed"]}
    for key in keys:
        verdicts = {answers[label]["passed"].get(key) for label in labels if label in answers} - {None}
        if len(verdicts) > 1:
            return True
    return any(p["orders"] and p["orders"][0] != p["orders"][1] for p in pairwise)


def _target(spec: dict):
    from tinyforge.evaluation.runner import Target

    return Target(spec["label"], folder=_folder(spec)) if spec["kind"] in ("run", "base") else \
        Target(spec["label"], endpoint=_endpoint(spec, concurrency=settings.EVAL_TARGET_CONCURRENCY))


def _folder(spec: dict) -> Path:
    from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

    run = TrainingRun.all_teams.get(pk=spec["run"])
    if spec["kind"] == "base":
        from tinyforge.training import base_models

        return base_models.folder(run.base_model, run.project.team_id)  # a name or run:<id>, never a path
    if spec.get("checkpoint"):
        return storage.path(Checkpoint.all_teams.get(pk=spec["checkpoint"]).storage_key)
    if run.status != RunStatus.SUCCEEDED or not run.output_key:
        best = run.checkpoints.order_by("-is_best", "-step").first()
        if best is None:
            raise TinyforgeError(f"run {run.name} is {run.status} and has no checkpoint to answer with")
        return storage.path(best.storage_key)
    return storage.path(run.output_key)


def _endpoint(spec: dict, *, concurrency: int):
    from tinyforge.evaluation.endpoints import Endpoint

    if spec["kind"] == "deployment":
        from tinyforge.deployments.inference import playground_key
        from tinyforge.deployments.models import Deployment, DeploymentStatus

        deployment = Deployment.all_teams.get(pk=spec["deployment"])
        if deployment.status != DeploymentStatus.READY:
            raise TinyforgeError(f"deployment {deployment.name} is {deployment.status}; it cannot answer")
        return Endpoint(settings.INFERENCE_URL.rstrip("/") + "/v1", deployment.name, concurrency=concurrency,
                        key_factory=lambda: playground_key(deployment))
    from tinyforge.datasets.importing import qa_api_key

    return Endpoint(spec["base_url"], spec["model"], api_key=qa_api_key(spec["base_url"]), concurrency=concurrency)
