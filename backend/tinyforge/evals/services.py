"""Eval sets, evaluations and gates. Views and jobs call these; the evaluation itself runs in
jobs.py (`evaluate(evaluation_id)` on the `eval` queue) through tinyforge.evaluation."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from tinyforge.core import storage
from tinyforge.core.audit import audit, save_changes
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.core.models import EventLevel
from tinyforge.deployments.models import Deployment, DeploymentStatus
from tinyforge.errors import Conflict, InvalidInput, TinyforgeError
from tinyforge.evals import lifecycle
from tinyforge.evals.models import EvalSet, EvalSetVersion, EvalSource, EvalStatus, Evaluation, Gate, Purpose
from tinyforge.evaluation.judges import JudgeConfig
from tinyforge.evaluation.scorers import Scorer
from tinyforge.evaluation.sets import EvalRow, parse_eval_file, parse_rows, read_eval_file, sha256, to_jsonl
from tinyforge.training.models import TrainingRun

EVAL_JOB = "tinyforge.evals.jobs.evaluate"
MAX_ROWS = 50_000  # an eval set larger than this is a dataset, not a test
# The project's default scorers: a run's automatic evaluation scores its validation rows with these
# (how many rows and how long the answers: the run's eval_generations and max_new_tokens).
RUN_SCORERS = ({"name": "exact_match"}, {"name": "must_include"}, {"name": "rouge_l"}, {"name": "token_f1"})


def evaluation_job_id(evaluation: Evaluation) -> str:
    return f"eval-{evaluation.pk}-{evaluation.attempt}"


# --- eval sets -----------------------------------------------------------------------------


def create_eval_set(request, *, project, name: str, description: str = "") -> EvalSet:
    if EvalSet.all_teams.filter(project=project, name=name).exists():
        raise InvalidInput({"name": [f"The project already has an eval set named {name}."]})
    eval_set = EvalSet.all_teams.create(project=project, name=name, description=description,
                                        created_by=_user(request))
    audit(request, "created", eval_set)
    return eval_set


def update_eval_set(request, eval_set: EvalSet, changes: dict) -> EvalSet:
    return save_changes(request, eval_set, changes)


def delete_eval_set(request, eval_set: EvalSet) -> None:
    """An eval set that an evaluation or the gate still uses is refused (RESTRICT, a 409); one that
    goes takes its versions' files with it."""
    keys = [v.storage_key for v in eval_set.versions.all() if v.storage_key]
    audit(request, "deleted", eval_set, changes={"name": eval_set.name})
    eval_set.delete()
    storage.delete_on_commit(keys)


@transaction.atomic
def add_version(request, eval_set: EvalSet, rows: list[EvalRow], *, source_kind: str, source: dict) -> EvalSetVersion:
    """A new immutable version of the set holding `rows` (already validated)."""
    if not rows:
        raise TinyforgeError("the eval set has no rows")
    if len(rows) > MAX_ROWS:
        raise TinyforgeError(f"the eval set has {len(rows)} rows; at most {MAX_ROWS} are allowed")
    EvalSet.all_teams.select_for_update().filter(pk=eval_set.pk).first()  # one number per version
    number = (eval_set.versions.aggregate(last=Max("number"))["last"] or 0) + 1
    data = to_jsonl(rows)
    tags = sorted({tag for row in rows for tag in row.tags})
    version = EvalSetVersion.all_teams.create(
        eval_set=eval_set, number=number, source_kind=source_kind, source=source, storage_key="",
        sha256=sha256(data), row_count=len(rows), tags=tags, created_by=_user(request))
    version.storage_key = storage.eval_set_version_key(eval_set.project_id, eval_set.pk, version.pk)
    with storage.atomic_write(version.storage_key) as handle:
        handle.write(data)
    version.save(update_fields=["storage_key"])
    audit(request, "created", version, project_id=eval_set.project_id,
          changes={"source_kind": source_kind, "rows": len(rows), "sha256": version.sha256})
    return version


def version_from_upload(request, eval_set: EvalSet, upload) -> EvalSetVersion:
    rows = parse_eval_file(upload.read(), upload.name)
    return add_version(request, eval_set, rows, source_kind=EvalSource.UPLOAD,
                       source={"file": storage.display_name(upload.name)})


def version_from_rows(request, eval_set: EvalSet, items: list) -> EvalSetVersion:
    try:
        rows = parse_rows(items, "rows")
    except TinyforgeError as exc:
        raise InvalidInput({"rows": [str(exc)]}) from None
    return add_version(request, eval_set, rows, source_kind=EvalSource.ROWS, source={})


@transaction.atomic
def version_from_playground(request, eval_set: EvalSet, saved: dict) -> EvalSetVersion:
    """The set's rows so far and one more: the prompt of a Playground conversation, with the answer
    the user kept as reference and the key facts they named."""
    deployment = saved.get("deployment")
    item = {"input": saved["messages"], "tags": ["playground"]}
    if saved.get("reference") is not None and saved["reference"].strip():
        item["reference"] = saved["reference"]
    if "must_include" in saved:
        item["must_include"] = saved["must_include"]
    try:
        row = parse_rows([item], "playground")[0]
    except TinyforgeError as exc:
        raise InvalidInput({"playground": [str(exc)]}) from None
    # Read the latest rows under the set's lock: two saves at once must not each drop the other's row.
    EvalSet.all_teams.select_for_update().filter(pk=eval_set.pk).first()
    previous = eval_set.versions.order_by("-number").first()
    rows = (read_version_rows(previous) if previous is not None else []) + [row]
    return add_version(request, eval_set, rows, source_kind=EvalSource.PLAYGROUND,
                       source={"previous_version": previous.pk if previous else None,
                               "deployment": deployment.pk if deployment else None})


def version_from_general(request, eval_set: EvalSet) -> EvalSetVersion:
    from tinyforge.evaluation.sets import general_rows

    return add_version(request, eval_set, general_rows(), source_kind=EvalSource.GENERAL, source={})


def version_from_dataset_version(request, eval_set: EvalSet, dataset_version, row_numbers: list[int] | None
                                 ) -> EvalSetVersion:
    """Rows picked in a ready dataset version (its 1-based row numbers; none: all of them)."""
    from tinyforge.datasets.models import DatasetVersionStatus
    from tinyforge.ml.schema import read_rows

    if dataset_version.status != DatasetVersionStatus.READY:
        raise Conflict(f"Dataset version {dataset_version.number} is {dataset_version.status}; pick rows in a ready one.")
    rows = [row for _, row in read_rows(storage.path(dataset_version.storage_key))]
    if row_numbers:
        missing = [n for n in row_numbers if not 1 <= n <= len(rows)]
        if missing:
            raise InvalidInput({"rows": [f"The version has {len(rows)} rows; no row {missing[0]}."]})
        rows = [rows[n - 1] for n in row_numbers]
    return add_version(request, eval_set, [_from_training_row(r) for r in rows], source_kind=EvalSource.DATASET_VERSION,
                       source={"dataset_version": dataset_version.pk, "rows": row_numbers or []})


def version_from_run_validation(request, eval_set: EvalSet, run: TrainingRun) -> EvalSetVersion:
    rows = run_validation_rows(run)
    if not rows:
        raise Conflict(f"Run {run.name} holds out no validation rows (validation_split 0 and no validation version).")
    return add_version(request, eval_set, rows, source_kind=EvalSource.RUN_VALIDATION, source={"run": run.pk})


def run_validation_rows(run: TrainingRun) -> list[EvalRow]:
    """The rows the run held out, as eval rows: the same split as training made."""
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.schema import read_rows
    from tinyforge.ml.dataprep import split_validation

    rows = [row for _, row in read_rows(storage.path(run.dataset_version.storage_key))]
    validation = ([row for _, row in read_rows(storage.path(run.validation_version.storage_key))]
                  if run.validation_version_id else None)
    _, held_out = split_validation(TrainConfig.from_dict(run.config), rows, validation)
    # A row whose answer is not one to imitate (KTO's undesirable) is no reference.
    return [_from_training_row(r) for r in held_out if getattr(r, "label", True) is not False]


def _from_training_row(row) -> EvalRow:
    """Any training row (supervised or preference) asks its prompt; the answer to imitate is the
    reference (a pair's chosen, a desirable completion)."""
    from tinyforge.ml.formatting import expected_reply, prompt_messages
    from tinyforge.ml.schema import Message

    return EvalRow(input=[Message(**m) for m in prompt_messages(row)], reference=expected_reply(row) or None)


def read_version_rows(version: EvalSetVersion) -> list[EvalRow]:
    return read_eval_file(storage.path(version.storage_key))


# --- evaluations ---------------------------------------------------------------------------


def check_scorers(scorers: list[dict]) -> list[dict]:
    try:
        return [Scorer.from_dict(s).to_dict() for s in scorers]
    except TinyforgeError as exc:
        raise InvalidInput({"scorers": [str(exc)]}) from None


def check_judge(judge: dict | None, targets: list[dict]) -> dict | None:
    if judge is None:
        return None
    try:
        config = JudgeConfig(mode=judge.get("mode", "pointwise"), prompt=judge.get("prompt", ""),
                             rubric=judge.get("rubric") or JudgeConfig.rubric, max_tokens=judge.get("max_tokens", 256))
    except TinyforgeError as exc:
        raise InvalidInput({"judge": [str(exc)]}) from None
    if config.mode == "pairwise" and len(targets) < 2:
        raise InvalidInput({"judge": ["A pairwise judge compares two targets or more; add a target."]})
    return {**config.to_dict(), "target": judge["target"]}


def check_endpoint(base_url: str, field: str) -> None:
    """An endpoint the server calls must be on the administrator's allow-list (as the qa recipe's)."""
    from tinyforge.datasets.importing import qa_api_key

    try:
        qa_api_key(base_url)
    except TinyforgeError as exc:
        raise InvalidInput({field: [str(exc)]}) from None


@transaction.atomic
def create_evaluation(request, *, project, version: EvalSetVersion, targets: list[dict], scorers: list[dict],
                      judge: dict | None, max_tokens: int = 128, name: str = "", purpose: str = Purpose.MANUAL,
                      run: TrainingRun | None = None, metadata: dict | None = None) -> Evaluation:
    if not scorers and judge is None:
        raise InvalidInput({"scorers": ["Choose at least one scorer or a judge."]})
    labels = [t["label"] for t in targets]
    if len(set(labels)) != len(labels):
        raise InvalidInput({"targets": ["Two targets have the same label; name them apart."]})
    for index, target in enumerate(targets):
        if target["kind"] == "endpoint":
            check_endpoint(target["base_url"], f"targets.{index}.base_url")
    if judge is not None and judge["target"]["kind"] == "endpoint":
        check_endpoint(judge["target"]["base_url"], "judge.target.base_url")
    evaluation = Evaluation.all_teams.create(
        project=project, name=name, eval_set_version=version, targets=targets, scorers=check_scorers(scorers),
        judge=check_judge(judge, targets), max_tokens=max_tokens, purpose=purpose, run=run,
        row_count=version.row_count, metadata=metadata, created_by=_user(request))
    evaluation.job_id = evaluation_job_id(evaluation)
    evaluation.save(update_fields=["job_id"])
    record_event(**evaluation.event_links(), source="platform",
                 message=f"evaluation {evaluation.pk} queued: {version} answered by {', '.join(labels)}")
    if request is not None:
        audit(request, "started", evaluation, changes={"eval_set_version": version.pk, "targets": labels})
    enqueue("eval", EVAL_JOB, evaluation.pk, job_id=evaluation.job_id)
    return evaluation


def cancel_evaluation(request, evaluation: Evaluation) -> Evaluation:
    lifecycle.mark_cancelled(evaluation.pk)
    record_event(**evaluation.event_links(), source="platform", message="cancelled")
    audit(request, "cancelled", evaluation)
    evaluation.refresh_from_db()
    return evaluation


def delete_evaluation(request, evaluation: Evaluation) -> None:
    audit(request, "deleted", evaluation)
    evaluation.delete()


def run_target(run: TrainingRun, checkpoint=None, label: str | None = None) -> dict:
    return {"kind": "run", "run": run.pk, "checkpoint": checkpoint.pk if checkpoint else None,
            "label": label or run.name}


def deployed_target(project) -> dict | None:
    """The project's model serving now (the most recently ready deployment), as a target."""
    deployment = (Deployment.all_teams.filter(project=project, status=DeploymentStatus.READY)
                  .order_by("-ready_at", "-pk").first())
    return None if deployment is None else {"kind": "deployment", "deployment": deployment.pk,
                                            "label": f"deployed: {deployment.name}"}


# --- after a run succeeds: its own evaluation, and the gate ---------------------------------------


def evaluate_finished_run(run: TrainingRun) -> list[Evaluation]:
    """Called when a run succeeds: its validation rows answered by the run and its base model, with
    the default scorers; when its dataset version was made with the knowledge recipe, the held-out
    fact check (must_include) the same way; and, when the project has a gate, the gate's evaluation."""
    from tinyforge.ml.config import TrainConfig

    started = []
    config = TrainConfig.from_dict(run.config)
    max_tokens = min(config.max_new_tokens, 4096)  # an evaluation's longest answer; older runs allowed more
    rows = run_validation_rows(run)[:config.eval_generations] if config.eval_generations else []
    if rows:
        eval_set, _ = EvalSet.all_teams.get_or_create(project=run.project, name=f"{run.name} validation rows",
                                                      defaults={"description": f"Held out by run {run.pk}"})
        version = add_version(None, eval_set, rows, source_kind=EvalSource.RUN_VALIDATION, source={"run": run.pk})
        targets = [{"kind": "base", "run": run.pk, "label": f"base: {run.base_model}"[:100]}, run_target(run)]
        started.append(create_evaluation(None, project=run.project, version=version, targets=targets,
                                         scorers=list(RUN_SCORERS), judge=None, purpose=Purpose.RUN, run=run,
                                         name=f"{run.name}: validation rows", max_tokens=max_tokens))
    fact_check = (run.dataset_version.stats or {}).get("fact_check") if run.dataset_version_id else None
    version = (EvalSetVersion.all_teams.filter(pk=fact_check["eval_set_version"]).first()
               if isinstance(fact_check, dict) and fact_check.get("eval_set_version") else None)
    if version is not None:
        # The knowledge recipe's held-out questions about the run's own data: did the facts go in?
        targets = [{"kind": "base", "run": run.pk, "label": f"base: {run.base_model}"[:100]}, run_target(run)]
        started.append(create_evaluation(None, project=run.project, version=version, targets=targets,
                                         scorers=[{"name": "must_include"}], judge=None, purpose=Purpose.RUN, run=run,
                                         name=f"{run.name}: fact check", max_tokens=max_tokens))
    gate = Gate.all_teams.filter(project=run.project, enabled=True).select_related("eval_set").first()
    if gate is not None:
        try:
            started.append(check_gate(None, gate, run))
        except Conflict as exc:  # the gate cannot be checked (nothing deployed, no rows): the run page says why
            record_event(**run.event_links(), level=EventLevel.WARNING, source="platform",
                         message=f"not checked against the gate: {exc}")
    return started


def check_gate(request, gate: Gate, run: TrainingRun) -> Evaluation:
    version = gate.eval_set.versions.order_by("-number").first()
    if version is None:
        raise Conflict(f"The gate's eval set {gate.eval_set.name} has no version yet; add rows to it.")
    targets = [run_target(run)]
    pairwise = gate.judge is not None and gate.judge["mode"] == "pairwise"
    deployed = deployed_target(run.project) if gate.max_drop is not None or pairwise else None
    if deployed is not None:
        targets.append(deployed)
    elif pairwise:
        raise Conflict(NOTHING_DEPLOYED)
    return create_evaluation(request, project=run.project, version=version, targets=targets,
                             scorers=[gate.scorer] if gate.scorer else [], judge=gate.judge, purpose=Purpose.GATE,
                             run=run, name=f"{run.name}: gate")


NOTHING_DEPLOYED = ("The gate's pairwise judge compares the run with the deployed model, and the project has no ready "
                    "deployment; deploy the first model with an override (recorded in the audit log).")


def gate_verdict(gate: Gate, summary: dict, targets: list[dict]) -> tuple[bool, str]:
    """Whether the run (the first target) passes `gate`, and why not. Rows left unscored (a judge's
    reply that could not be read, a row without what the scorer needs) count neither way: the score
    is over the scored rows, and how many were not is said."""
    from tinyforge.evaluation.runner import JUDGE_KEY  # not at import: the runner loads the serving engine

    if gate.judge is not None and gate.judge["mode"] == "pairwise":
        return _pairwise_verdict(gate, summary)
    key = Scorer.from_dict(gate.scorer).key if gate.scorer else JUDGE_KEY
    scores = summary["targets"][targets[0]["label"]]["scores"][key]
    mean = scores["mean"]
    unscored = _unscored(scores["unscored"], scores["n"] + scores["unscored"])
    if mean is None:
        return False, f"no row could be scored by {key}{unscored}"
    if mean < gate.threshold:
        return False, f"{key} is {mean:.3f}, below the threshold {gate.threshold:.3f}{unscored}"
    if gate.max_drop is not None and len(targets) > 1:
        deployed = summary["targets"][targets[1]["label"]]["scores"][key]["mean"]
        if deployed is not None and mean < deployed - gate.max_drop:
            return False, (f"{key} is {mean:.3f}, worse than {targets[1]['label']} ({deployed:.3f}) by more than "
                           f"{gate.max_drop:.3f}{unscored}")
    return True, f"{key} is {mean:.3f} (threshold {gate.threshold:.3f}){unscored}"


def _pairwise_verdict(gate: Gate, summary: dict) -> tuple[bool, str]:
    """The run is the first of the pair: its win rate is its wins and half its ties over the judged rows."""
    pair = summary["pairs"][0]
    judged, unscored = pair["judged"], _unscored(pair["unscored"], pair["judged"] + pair["unscored"])
    if not judged:
        return False, f"the judge decided no row between the run and {pair['second']}{unscored}"
    rate = pair["first_wins"] + pair["ties"] / 2
    against = (f"against {pair['second']} over {judged} rows (wins {pair['first_wins']:.0%}, ties {pair['ties']:.0%}, "
               f"losses {pair['second_wins']:.0%}){unscored}")
    if rate < gate.threshold:
        return False, f"win rate {rate:.3f}, below the threshold {gate.threshold:.3f}, {against}"
    return True, f"win rate {rate:.3f} (threshold {gate.threshold:.3f}) {against}"


def _unscored(count: int, total: int) -> str:
    return f"; {count} of {total} rows unscored, counted neither way" if count else ""


def gate_status(run: TrainingRun) -> dict:
    """{"state": "none" | "pending" | "passes" | "fails", "reason", "evaluation"} for the run page and
    the Deploy dialog."""
    gate = Gate.all_teams.filter(project_id=run.project_id, enabled=True).first()
    if gate is None:
        return {"state": "none", "reason": "the project has no gate", "evaluation": None}
    latest = run.evaluations.filter(purpose=Purpose.GATE).order_by("-pk").first()
    if latest is None:
        pairwise = gate.judge is not None and gate.judge["mode"] == "pairwise"
        reason = (NOTHING_DEPLOYED[0].lower() + NOTHING_DEPLOYED[1:].rstrip(".")
                  if pairwise and deployed_target(run.project) is None
                  else "the run was not evaluated against the gate; check it first")
        return {"state": "fails", "reason": reason, "evaluation": None}
    if latest.status in lifecycle.ACTIVE:
        return {"state": "pending", "reason": "the gate's evaluation is running", "evaluation": latest.pk}
    if latest.status != EvalStatus.SUCCEEDED:
        return {"state": "fails", "reason": f"the gate's evaluation {latest.status}: {latest.error}".rstrip(": "),
                "evaluation": latest.pk}
    return {"state": "passes" if latest.gate_passed else "fails", "reason": latest.gate_reason,
            "evaluation": latest.pk}


def check_deploy(request, run: TrainingRun, *, override: bool, reason: str) -> None:
    """Registered with deployments: a run that does not pass its project's gate is refused (409)
    unless the caller overrides it, which is recorded in the audit log."""
    status = gate_status(run)
    if status["state"] in ("none", "passes"):
        return
    why = f"Run {run.name} {'is still being checked against' if status['state'] == 'pending' else 'fails'} the gate: " \
          f"{status['reason']}."
    if not override:
        raise Conflict(f"{why} Deploy it anyway with override_gate (recorded in the audit log).")
    audit(request, "gate_overridden", run, changes={"gate": status, "reason": reason})


def set_gate(request, *, project, eval_set: EvalSet, scorer: dict | None, judge: dict | None, threshold: float,
             max_drop: float | None, enabled: bool = True) -> Gate:
    scorer = check_scorers([scorer])[0] if scorer else None
    if judge is not None:
        if judge["target"]["kind"] == "endpoint":
            check_endpoint(judge["target"]["base_url"], "judge.target.base_url")
        # A pairwise gate's second target is the deployed model, found when a run is checked.
        judge = check_judge(judge, [{}, {}])
    gate, created = Gate.all_teams.update_or_create(
        project=project, defaults={"eval_set": eval_set, "scorer": scorer, "judge": judge, "threshold": threshold,
                                   "max_drop": max_drop, "enabled": enabled, "updated_by": _user(request)})
    audit(request, "created" if created else "updated", gate,
          changes={"eval_set": eval_set.pk, "scorer": scorer, "judge": judge, "threshold": threshold,
                   "max_drop": max_drop, "enabled": enabled})
    return gate


def delete_gate(request, gate: Gate) -> None:
    audit(request, "deleted", gate)
    gate.delete()


def _user(request):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None

