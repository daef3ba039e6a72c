"""OpenAI's Evals API over the platform's eval sets and evaluations, so the official `openai`
client's `client.evals` works unchanged:

    POST /v1/evals                               -> an eval set whose testing criteria map to scorers
    GET  /v1/evals, /v1/evals/{id}; POST (rename, metadata); DELETE
    POST /v1/evals/{id}/runs                     -> a version of the items + an evaluation of a deployment
    GET  /v1/evals/{id}/runs, /v1/evals/{id}/runs/{run_id}; POST .../cancel; DELETE
    GET  /v1/evals/{id}/runs/{run_id}/output_items, .../output_items/{item_id}

Authenticated and scoped like the fine-tuning mirror (training/openai_api.py): API tokens only,
the project named by the `OpenAI-Project` header else "OpenAI API". Ids carry OpenAI's prefixes
over our row ids (eval-3, evalrun-12, outputitem-40). What maps:

- data_source_config {"type": "custom", "item_schema": {...}}; items are eval rows ({"input",
  "reference", "must_include", "tags"}), or any fields the run's input_messages template names.
- testing_criteria: string_check with operation "eq" -> exact_match (case and whitespace folded),
  "ilike" -> must_include of the reference; text_similarity with evaluation_metric "rouge_l" ->
  rouge_l at its pass_threshold. Model graders: use the platform's judges (/api/v1/evaluations/).
- a run's data_source {"type": "completions", "model": <a deployment's name>, "source":
  {"type": "file_content", "content": [{"item": {...}}]}, "input_messages": {"type": "template",
  "template": [{"role": "user", "content": "{{item.input}}"}]}, "sampling_params":
  {"max_completion_tokens": N}}.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from tinyforge.core.access import require_role
from tinyforge.core.roles import Role
from tinyforge.deployments.models import Deployment
from tinyforge.errors import TinyforgeError
from tinyforge.evals import lifecycle, services
from tinyforge.evals.models import EvalResult, EvalSet, EvalSource, EvalStatus, Evaluation
from tinyforge.evaluation.scorers import Scorer
from tinyforge.evaluation.sets import parse_rows
from tinyforge.training.openai_api import OpenAIView, _limit, _ordered_after, _page, _row_id, _unix

STATUS = {EvalStatus.QUEUED: "queued", EvalStatus.RUNNING: "in_progress", EvalStatus.SUCCEEDED: "completed",
          EvalStatus.FAILED: "failed", EvalStatus.CANCELLED: "canceled"}
_ITEM_FIELD = re.compile(r"\{\{\s*item\.([A-Za-z0-9_]+)\s*\}\}")
SAMPLE_OUTPUT = "{{sample.output_text}}"
REFERENCE = "{{item.reference}}"


def _criteria_to_scorers(criteria) -> list[dict]:
    if not isinstance(criteria, list) or not criteria:
        raise exceptions.ValidationError({"testing_criteria": ["Give at least one testing criterion."]})
    scorers = []
    for index, criterion in enumerate(criteria):
        where = f"testing_criteria.{index}"
        if not isinstance(criterion, dict):
            raise exceptions.ValidationError({where: ["Must be an object."]})
        kind = criterion.get("type")
        if kind == "string_check":
            if criterion.get("input") != SAMPLE_OUTPUT or criterion.get("reference") != REFERENCE:
                raise exceptions.ValidationError({where: [f"A string_check compares input {SAMPLE_OUTPUT!r} with "
                                                          f"reference {REFERENCE!r}."]})
            operation = criterion.get("operation")
            if operation not in ("eq", "ilike"):
                raise exceptions.ValidationError({f"{where}.operation": ["Supported: eq (exact match, case and "
                                                                         "whitespace folded) and ilike (contains)."]})
            scorers.append({"name": "exact_match" if operation == "eq" else "must_include",
                            "openai_name": criterion.get("name") or operation})
        elif kind == "text_similarity":
            if criterion.get("evaluation_metric") != "rouge_l":
                raise exceptions.ValidationError({f"{where}.evaluation_metric": ["Supported: rouge_l."]})
            try:
                Scorer("rouge_l", threshold=criterion.get("pass_threshold"))
            except (TinyforgeError, TypeError) as exc:
                raise exceptions.ValidationError({f"{where}.pass_threshold": [str(exc)]}) from None
            scorers.append({"name": "rouge_l", "threshold": criterion.get("pass_threshold"),
                            "openai_name": criterion.get("name") or "rouge_l"})
        else:
            raise exceptions.ValidationError({f"{where}.type": [
                f"{kind!r} is not supported: use string_check or text_similarity; model graders are the "
                "platform's judges (POST /api/v1/evaluations/ with a judge)."]})
    return scorers


def eval_object(eval_set: EvalSet) -> dict:
    stored = eval_set.openai_eval or {}
    return {"id": f"eval-{eval_set.pk}", "object": "eval", "name": eval_set.name, "created_at": _unix(eval_set.created_at),
            "data_source_config": stored.get("data_source_config") or {"type": "custom", "schema": {}},
            "testing_criteria": stored.get("testing_criteria") or [], "metadata": stored.get("metadata")}


def _result_counts(evaluation: Evaluation, scorers: list[dict]) -> tuple[dict, list]:
    counts = {"total": evaluation.rows_done, "passed": 0, "failed": 0, "errored": 0}
    per = {s["openai_name"]: {"testing_criteria": s["openai_name"], "passed": 0, "failed": 0} for s in scorers}
    label = evaluation.targets[0]["label"]
    for answers in evaluation.results.values_list("answers", flat=True).iterator():
        answer = answers.get(label) or {}
        if answer.get("error"):
            counts["errored"] += 1
            continue
        verdicts = [answer.get("passed", {}).get(Scorer.from_dict(s).key) for s in scorers]
        for scorer, verdict in zip(scorers, verdicts):
            per[scorer["openai_name"]]["passed" if verdict else "failed"] += 1
        counts["passed" if all(verdicts) else "failed"] += 1
    return counts, list(per.values())


def run_object(evaluation: Evaluation) -> dict:
    eval_set = evaluation.eval_set_version.eval_set
    scorers = (eval_set.openai_eval or {}).get("scorers") or []
    counts, per = _result_counts(evaluation, scorers)
    target = evaluation.targets[0]
    summary = evaluation.summary.get("targets", {}).get(target["label"], {})
    usage = [{"model_name": target.get("model") or target["label"], "invocation_count": summary.get("answered", 0),
              "prompt_tokens": summary.get("prompt_tokens", 0), "completion_tokens": summary.get("completion_tokens", 0),
              "total_tokens": summary.get("prompt_tokens", 0) + summary.get("completion_tokens", 0),
              "cached_tokens": 0}] if summary else []
    return {"id": f"evalrun-{evaluation.pk}", "object": "eval.run", "eval_id": f"eval-{eval_set.pk}",
            "name": evaluation.name, "created_at": _unix(evaluation.created_at), "status": STATUS[evaluation.status],
            "model": target.get("model") or target["label"], "data_source": (evaluation.metadata or {}).get("data_source"),
            "metadata": (evaluation.metadata or {}).get("metadata"), "result_counts": counts,
            "per_testing_criteria_results": per, "per_model_usage": usage, "report_url": "",
            "error": {"code": "evaluation_failed", "message": evaluation.error} if evaluation.error else None}


def output_item(evaluation: Evaluation, result: EvalResult) -> dict:
    scorers = (evaluation.eval_set_version.eval_set.openai_eval or {}).get("scorers") or []
    label = evaluation.targets[0]["label"]
    answer = result.answers.get(label) or {}
    scores, passed = answer.get("scores", {}), answer.get("passed", {})
    results = [{"name": s["openai_name"], "type": s["name"], "score": scores.get(Scorer.from_dict(s).key),
                "passed": bool(passed.get(Scorer.from_dict(s).key)), "sample": None} for s in scorers]
    messages = ([{"role": "user", "content": result.input}] if isinstance(result.input, str) else result.input)
    return {
        "id": f"outputitem-{result.pk}", "object": "eval.run.output_item", "created_at": _unix(evaluation.created_at),
        "eval_id": f"eval-{evaluation.eval_set_version.eval_set_id}", "run_id": f"evalrun-{evaluation.pk}",
        "datasource_item_id": result.index,
        "datasource_item": {"input": result.input, "reference": result.reference, "must_include": result.must_include,
                            "tags": result.tags},
        "results": results, "status": "pass" if results and all(r["passed"] for r in results) else "fail",
        "sample": {"input": messages, "output": [{"role": "assistant", "content": answer.get("answer", "")}],
                   "model": evaluation.targets[0].get("model") or label, "error": answer.get("error"),
                   "finish_reason": "stop", "max_completion_tokens": evaluation.max_tokens, "seed": 0,
                   "temperature": 0.0, "top_p": 1.0,
                   "usage": {"prompt_tokens": answer.get("prompt_tokens", 0),
                             "completion_tokens": answer.get("completion_tokens", 0),
                             "total_tokens": answer.get("prompt_tokens", 0) + answer.get("completion_tokens", 0),
                             "cached_tokens": 0}},
    }


class EvalsView(OpenAIView):
    def eval_set(self, eval_id: str) -> EvalSet:
        eval_set = EvalSet.objects.for_teams([self.team_id()]).filter(
            pk=_row_id(eval_id, "eval-"), openai_eval__isnull=False).first()
        if eval_set is None:
            raise exceptions.NotFound(f"No eval {eval_id}.")
        return eval_set

    def evaluation(self, eval_set: EvalSet, run_id: str) -> Evaluation:
        evaluation = Evaluation.objects.for_teams([self.team_id()]).select_related("eval_set_version__eval_set").filter(
            pk=_row_id(run_id, "evalrun-"), eval_set_version__eval_set=eval_set).first()
        if evaluation is None:
            raise exceptions.NotFound(f"No run {run_id} of eval-{eval_set.pk}.")
        return evaluation

    @extend_schema(exclude=True)
    def get(self, request):
        sets = _ordered_after(request, EvalSet.objects.for_teams([self.team_id()]).filter(openai_eval__isnull=False),
                              "eval-")
        return Response(_page(sets, _limit(request), eval_object))

    @extend_schema(exclude=True)
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        config = body.get("data_source_config")
        if not isinstance(config, dict) or config.get("type") != "custom":
            raise exceptions.ValidationError({"data_source_config": ["Give {\"type\": \"custom\", \"item_schema\": {...}}."]})
        scorers = _criteria_to_scorers(body.get("testing_criteria"))
        project = self.project()
        require_role(request, project.team_id, Role.MEMBER, action="create evals")
        name = str(body.get("name") or "OpenAI eval")[:80]
        taken = set(EvalSet.all_teams.filter(project=project, name__startswith=name).values_list("name", flat=True))
        unique = name if name not in taken else next(f"{name} #{n}" for n in range(2, 10_000) if f"{name} #{n}" not in taken)
        eval_set = services.create_eval_set(request, project=project, name=unique,
                                            description="Created through the OpenAI Evals API")
        eval_set.openai_eval = {"data_source_config": {"type": "custom", "schema": config.get("item_schema") or {}},
                                "testing_criteria": body["testing_criteria"], "metadata": body.get("metadata"),
                                "scorers": scorers}
        eval_set.save(update_fields=["openai_eval"])
        return Response(eval_object(eval_set))


class EvalView(EvalsView):
    @extend_schema(exclude=True)
    def get(self, request, eval_id: str):
        return Response(eval_object(self.eval_set(eval_id)))

    @extend_schema(exclude=True)
    def post(self, request, eval_id: str):
        eval_set = self.eval_set(eval_id)
        require_role(request, eval_set.project.team_id, Role.MEMBER, action="change evals")
        body = request.data if isinstance(request.data, dict) else {}
        if body.get("name"):
            eval_set.name = str(body["name"])[:100]
        if "metadata" in body:
            eval_set.openai_eval = {**eval_set.openai_eval, "metadata": body["metadata"]}
        eval_set.save(update_fields=["name", "openai_eval"])
        return Response(eval_object(eval_set))

    @extend_schema(exclude=True)
    def delete(self, request, eval_id: str):
        eval_set = self.eval_set(eval_id)
        require_role(request, eval_set.project.team_id, Role.MEMBER, action="delete evals")
        with transaction.atomic():
            Evaluation.all_teams.filter(eval_set_version__eval_set=eval_set).delete()
            eval_set.delete()
        return Response({"object": "eval.deleted", "deleted": True, "eval_id": eval_id})


def _items(data_source: dict) -> list:
    source = data_source.get("source")
    if not isinstance(source, dict) or source.get("type") != "file_content" or not isinstance(source.get("content"), list):
        raise exceptions.ValidationError({"data_source.source": [
            "Give {\"type\": \"file_content\", \"content\": [{\"item\": {...}}, ...]}."]})
    items = []
    for index, entry in enumerate(source["content"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), dict):
            raise exceptions.ValidationError({f"data_source.source.content.{index}": ["Must be {\"item\": {...}}."]})
        items.append(entry["item"])
    return items


def _render(items: list, template) -> list:
    """Eval rows from items through the input_messages template ({{item.field}} replaced)."""
    if template is None:
        return [{k: v for k, v in item.items() if k in ("input", "reference", "must_include", "tags", "id")}
                for item in items]
    if not isinstance(template, dict) or template.get("type") != "template" or not isinstance(template.get("template"), list):
        raise exceptions.ValidationError({"data_source.input_messages": [
            "Give {\"type\": \"template\", \"template\": [{\"role\": ..., \"content\": \"... {{item.input}} ...\"}]}."]})
    rows = []
    for number, item in enumerate(items, start=1):
        messages = []
        for message in template["template"]:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise exceptions.ValidationError({"data_source.input_messages.template": [
                    "Each message is {\"role\": ..., \"content\": \"text\"}."]})
            missing = [f for f in _ITEM_FIELD.findall(message["content"]) if f not in item]
            if missing:
                raise exceptions.ValidationError({f"data_source.source.content.{number - 1}.item": [
                    f"The template names item.{missing[0]}, which this item lacks."]})
            content = _ITEM_FIELD.sub(lambda m: str(item[m.group(1)]), message["content"])
            messages.append({"role": message.get("role", "user"), "content": content})
        reference = item.get("reference")
        rows.append({"input": messages, **({"reference": str(reference)} if reference is not None else {}),
                     **({"must_include": item["must_include"]} if "must_include" in item else {})})
    return rows


class RunsView(EvalsView):
    @extend_schema(exclude=True)
    def get(self, request, eval_id: str):
        eval_set = self.eval_set(eval_id)
        runs = _ordered_after(request, Evaluation.objects.for_teams([self.team_id()]).select_related(
            "eval_set_version__eval_set").filter(eval_set_version__eval_set=eval_set), "evalrun-")
        return Response(_page(runs, _limit(request), run_object))

    @extend_schema(exclude=True)
    def post(self, request, eval_id: str):
        eval_set = self.eval_set(eval_id)
        body = request.data if isinstance(request.data, dict) else {}
        data_source = body.get("data_source")
        if not isinstance(data_source, dict) or data_source.get("type") != "completions":
            raise exceptions.ValidationError({"data_source.type": [
                "Supported: completions (a deployment answers the items)."]})
        name = data_source.get("model")
        if not isinstance(name, str) or not name:
            raise exceptions.ValidationError({"data_source.model": ["The name of a deployment of this token's team."]})
        deployment = Deployment.objects.for_teams([self.team_id()]).filter(name=name).first()
        if deployment is None:  # another team's model is answered like one that does not exist, as OpenAI does
            raise exceptions.NotFound(f"The model {name!r} does not exist in this token's team.")
        max_tokens = (data_source.get("sampling_params") or {}).get("max_completion_tokens") or 128
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            raise exceptions.ValidationError({"data_source.sampling_params.max_completion_tokens": [
                "Must be a whole number from 1 to 4096."]})
        rows = _render(_items(data_source), data_source.get("input_messages"))
        try:
            parsed = parse_rows(rows, "data_source.source.content")
        except TinyforgeError as exc:
            raise exceptions.ValidationError({"data_source.source.content": [str(exc)]}) from None
        require_role(request, eval_set.project.team_id, Role.MEMBER, action="run evals")
        scorers = [{k: v for k, v in s.items() if k != "openai_name"} for s in eval_set.openai_eval["scorers"]]
        with transaction.atomic():
            version = services.add_version(request, eval_set, parsed, source_kind=EvalSource.ROWS,
                                           source={"openai": "file_content"})
            evaluation = services.create_evaluation(
                request, project=eval_set.project, version=version, scorers=scorers, judge=None,
                targets=[{"kind": "deployment", "deployment": deployment.pk, "label": deployment.name,
                          "model": deployment.name}],
                max_tokens=max_tokens, name=str(body.get("name") or f"{eval_set.name} on {deployment.name}")[:100],
                metadata={"data_source": data_source, "metadata": body.get("metadata")})
        return Response(run_object(evaluation))


class RunView(EvalsView):
    @extend_schema(exclude=True)
    def get(self, request, eval_id: str, run_id: str):
        return Response(run_object(self.evaluation(self.eval_set(eval_id), run_id)))

    @extend_schema(exclude=True)
    def delete(self, request, eval_id: str, run_id: str):
        evaluation = self.evaluation(self.eval_set(eval_id), run_id)
        require_role(request, evaluation.project.team_id, Role.MEMBER, action="delete eval runs")
        evaluation.delete()
        return Response({"object": "eval.run.deleted", "deleted": True, "run_id": run_id})


class CancelRunView(EvalsView):
    @extend_schema(exclude=True)
    def post(self, request, eval_id: str, run_id: str):
        evaluation = self.evaluation(self.eval_set(eval_id), run_id)
        require_role(request, evaluation.project.team_id, Role.MEMBER, action="cancel eval runs")
        if evaluation.status in lifecycle.ACTIVE:
            evaluation = services.cancel_evaluation(request, evaluation)
        return Response(run_object(evaluation))


class OutputItemsView(EvalsView):
    @extend_schema(exclude=True)
    def get(self, request, eval_id: str, run_id: str):
        evaluation = self.evaluation(self.eval_set(eval_id), run_id)
        results = _ordered_after(request, evaluation.results.all(), "outputitem-")
        wanted = request.query_params.get("status")
        items = [output_item(evaluation, r) for r in results]
        if wanted in ("pass", "fail"):
            items = [i for i in items if i["status"] == wanted]
        limit = _limit(request)
        page = {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
        if page["data"]:
            page["first_id"], page["last_id"] = page["data"][0]["id"], page["data"][-1]["id"]
        return Response(page)


class OutputItemView(EvalsView):
    @extend_schema(exclude=True)
    def get(self, request, eval_id: str, run_id: str, item_id: str):
        evaluation = self.evaluation(self.eval_set(eval_id), run_id)
        result = evaluation.results.filter(pk=_row_id(item_id, "outputitem-")).first()
        if result is None:
            raise exceptions.NotFound(f"No output item {item_id} in {run_id}.")
        return Response(output_item(evaluation, result))


urlpatterns = [
    path("evals", EvalsView.as_view(), name="openai-evals"),
    path("evals/<str:eval_id>", EvalView.as_view(), name="openai-eval"),
    path("evals/<str:eval_id>/runs", RunsView.as_view(), name="openai-eval-runs"),
    path("evals/<str:eval_id>/runs/<str:run_id>", RunView.as_view(), name="openai-eval-run"),
    path("evals/<str:eval_id>/runs/<str:run_id>/cancel", CancelRunView.as_view(), name="openai-eval-run-cancel"),
    path("evals/<str:eval_id>/runs/<str:run_id>/output_items", OutputItemsView.as_view(), name="openai-eval-output-items"),
    path("evals/<str:eval_id>/runs/<str:run_id>/output_items/<str:item_id>", OutputItemView.as_view(),
         name="openai-eval-output-item"),
]
