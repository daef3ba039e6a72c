"""Tenancy, checked by walking the URL configuration: every API route is covered, including
routes added after this test was written; so are the query parameters that name objects and the
inference service's routes.

charlie (team Globex) uses the ids of alice's team (Acme): every route with an id answers 404,
every list shows only Globex rows, and every foreign key pointed at an Acme object is a 400.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from deployments.conftest import inference_service, queues, trained_model_dir  # noqa: F401  (fixtures)
from tinyforge.core.tenancy import TeamOwnedModel

API_PREFIX = "api/v1/"


def api_routes():
    """(path template, view class, {method: action}) for every DRF route under /api/v1/."""

    def walk(patterns, prefix):
        for pattern in patterns:
            text = prefix + str(pattern.pattern).lstrip("^")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, text.rstrip("$"))
            elif isinstance(pattern, URLPattern):
                yield text.rstrip("$"), pattern.callback

    for template, callback in walk(get_resolver().url_patterns, ""):
        if not template.startswith(API_PREFIX) or "(?P<format>" in template:
            continue
        cls = getattr(callback, "cls", None)
        actions = getattr(callback, "actions", None) or {}
        if cls is None:
            continue
        allowed = {m: a for m, a in actions.items() if m in cls.http_method_names}
        yield template, cls, allowed


def fill(template: str, pk) -> str:
    return "/" + re.sub(r"\(\?P<pk>[^)]*\)", str(pk), template)


def detail_routes():
    return [(t, cls, actions) for t, cls, actions in api_routes() if "(?P<pk>" in t]


def list_routes():
    return [(t, cls, actions) for t, cls, actions in api_routes()
            if "(?P<" not in t and getattr(cls, "model", None) is not None
            and {"list", "create"} & set(actions.values())]


def object_of(world, model):
    """The world's object of this model (subclass-aware: RunEvent is an Event)."""
    for value in vars(world).values():
        if isinstance(value, model):
            return value
    instance = model.all_teams.filter(**{f"{model.team_path}": world.team}).first() if model.team_path != "id" else world.team
    assert instance is not None, f"the test world has no {model.__name__}: add one to personas.populate_team"
    return instance


def team_fks(model):
    return [f for f in model._meta.concrete_fields
            if f.is_relation and f.related_model is not None and issubclass(f.related_model, TeamOwnedModel)]


def test_it_walks_a_real_url_configuration():
    routes = list(api_routes())
    assert len(detail_routes()) >= 20, [t for t, _, _ in routes]
    assert len(list_routes()) >= 14


@pytest.mark.parametrize("template,cls,actions", detail_routes(), ids=lambda v: v if isinstance(v, str) else "")
def test_it_answers_404_for_another_teams_ids(template, cls, actions, acme, globex, client_for, alice, charlie):
    target = object_of(acme, cls.model)
    url = fill(template, target.pk)
    outsider, owner = client_for(charlie), client_for(alice)
    for method in actions:
        if method in ("head", "options"):
            continue
        response = getattr(outsider, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.status_code, response.content[:300])
        assert response.json()["error"]["code"] == "not_found"
    if "get" in actions:
        # The same URL works for a member of the owning team, so the 404 above is about tenancy.
        response = owner.get(url)
        assert response.status_code != 404 and response.status_code < 500, (url, response.status_code, response.content[:300])


@pytest.mark.parametrize("template,cls,actions", list_routes(), ids=lambda v: v if isinstance(v, str) else "")
def test_it_never_lists_another_teams_rows(template, cls, actions, acme, globex, client_for, alice, charlie):
    if "get" not in actions:
        pytest.skip("no list")
    model = cls.model
    url = fill(template, "")
    for user, world in ((charlie, globex), (alice, acme)):
        response = client_for(user).get(url, {"page_size": 500} if cls.pagination_class else {})
        assert response.status_code == 200, (url, response.content[:300])
        ids = [row["id"] for row in response.json()["results"]]
        assert ids, f"{url} listed nothing for {user}: the check below would prove nothing"
        foreign = model.all_teams.filter(pk__in=ids).exclude(**{model.team_path: world.team.pk})
        assert not foreign.exists(), f"{url} leaked rows of another team to {user}"


@pytest.mark.parametrize("template,cls,actions", list_routes(), ids=lambda v: v if isinstance(v, str) else "")
def test_it_rejects_foreign_keys_to_another_teams_objects_on_create(template, cls, actions, acme, globex, client_for,
                                                                    charlie):
    if "post" not in actions:
        pytest.skip("no create")
    client = client_for(charlie)
    fks = team_fks(cls.model)
    assert fks or cls.model.team_path == "id"
    for field in fks:
        foreign = object_of(acme, field.related_model)
        rest, status = CREATE_BODIES.get((template, field.name), (lambda own: {}, 400))
        response = client.post(fill(template, ""), {**rest(globex), field.name: foreign.pk}, format="json")
        assert response.status_code == status, (template, field.name, response.status_code, response.content[:300])
        error = response.json()["error"]
        assert field.name in (error["message"] if status == 404 else error["fields"]), (template, field.name, error)


# The rest of the body beside the foreign key, and the answer, where a 400 on the field alone is not
# it: feedback names completions by the id the API returned, and issue 20 asks that another team's
# answer be answered as one that does not exist (404, the message naming the field).
CREATE_BODIES = {
    ("api/v1/feedback/", "completion"): (lambda own: {"rating": "up"}, 404),
    ("api/v1/feedback/", "compared_with"): (lambda own: {"completion": own.completion.pk, "preferred": "tie"}, 404),
    ("api/v1/feedback/", "preferred"): (lambda own: {"completion": own.completion.pk, "rating": "up"}, 400),
}


@pytest.mark.parametrize("template,cls,actions", [r for r in detail_routes() if "patch" in r[2]],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_it_rejects_foreign_keys_to_another_teams_objects_on_update(template, cls, actions, acme, globex,
                                                                    client_for, charlie):
    own = object_of(globex, cls.model)
    client = client_for(charlie)
    for field in team_fks(cls.model):
        foreign = object_of(acme, field.related_model)
        response = client.patch(fill(template, own.pk), {field.name: foreign.pk}, format="json")
        assert response.status_code == 400, (template, field.name, response.status_code, response.content[:300])
        assert field.name in response.json()["error"]["fields"]


# Query parameters that name objects, and the Acme object each is given in the test below. A new
# parameter of this kind fails test_every_query_parameter_that_names_an_object_is_covered until
# it is added here.
REFERENCES = {
    "team": lambda acme: acme.team.pk, "project": lambda acme: acme.project.pk,
    "dataset": lambda acme: acme.dataset.pk, "run": lambda acme: acme.run.pk,
    "dataset_version": lambda acme: acme.version.pk, "validation_version": lambda acme: acme.version.pk,
    "deployment": lambda acme: acme.deployment.pk, "export": lambda acme: acme.export.pk,
    "checkpoint": lambda acme: acme.checkpoint.pk, "connection": lambda acme: acme.connection.pk,
    "actor": lambda acme: acme.membership.user_id, "against": lambda acme: acme.version.pk,
    "parent": lambda acme: acme.version.pk, "target_id": lambda acme: acme.project.pk,
    "ids": lambda acme: f"{acme.run.pk},{acme.run.pk}", "base_model": lambda acme: f"run:{acme.run.pk}",
    "eval_set": lambda acme: acme.eval_set.pk, "eval_set_version": lambda acme: acme.eval_set_version.pk,
    "completion": lambda acme: acme.completion.pk,
}


NOT_OBJECTS = {"page", "page_size", "limit", "after", "after_event", "after_metric", "ordering", "q", "name", "level",
               "min_level", "source", "kind", "status", "method", "format", "action", "target_type", "token",
               "max_seq_length", "created_after", "created_before", "is_best", "role", "scopes", "purpose", "order",
               "step", "runtime", "email", "disagreements", "export_format", "open", "quantize", "regressions",
               "revoked", "source_kind", "tag", "tracker", "fact"}


def query_parameters():
    """(schema path, parameter name, model of the path's objects or None) for every query parameter
    of every GET operation of the control plane's schema."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    models = {fill(t, "{id}") if "(?P<pk>" in t else fill(t, ""): getattr(cls, "model", None)
              for t, cls, _ in api_routes()}
    for path, item in schema["paths"].items():
        for parameter in item.get("get", {}).get("parameters", []):
            if parameter["in"] == "query" and path.startswith("/api/"):
                yield path, parameter["name"], models.get(path)


def test_every_query_parameter_that_names_an_object_is_covered(db):
    unknown = sorted({name for _path, name, _model in query_parameters() if name not in NOT_OBJECTS | set(REFERENCES)})
    assert not unknown, f"say in acme_reference which object these name, or add them to NOT_OBJECTS: {unknown}"


def test_query_parameters_naming_another_teams_objects_find_nothing_of_theirs(acme, globex, alice, charlie, client_for):
    client = client_for(charlie)
    checked = 0
    for path, name, model in query_parameters():
        if name not in REFERENCES:
            continue
        value = REFERENCES[name](acme)
        url = path.replace("{id}", str(object_of(globex, model).pk)) if "{id}" in path else path
        response = client.get(url, {name: value})
        checked += 1
        assert response.status_code in (200, 400, 404, 409), (url, name, response.status_code, response.content[:300])
        assert "Acme" not in response.content.decode(), (url, name, response.content[:300])
        if response.status_code == 200 and "results" in response.json() and "{id}" not in path:
            assert response.json()["results"] == [], (url, name, "filtered by another team's object, found rows")
    assert checked >= 30


# The inference service's routes, each with the request that names a model (None: the route names
# none). A route added to serving/app.py fails the walk below until it is listed here.
INFERENCE_REQUESTS = {
    "/health": None, "/readyz": None, "/metrics": None,
    "/v1/models": ("GET", "/v1/models", None),
    "/v1/models/{model:path}": ("GET", "/v1/models/{model}", None),
    "/v1/chat/completions": ("POST", "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    "/v1/completions": ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    "/predict": ("POST", "/predict", {"input": "hi", "max_tokens": 2}),
}


@pytest.mark.django_db(transaction=True)
def test_the_inference_service_answers_another_teams_models_as_missing(acme, globex, alice, charlie, client_for,
                                                                       queues, inference_service, trained_model_dir):
    import httpx

    from deployments.conftest import inference_secret, trained_run, wait_for_status, work_off
    from tinyforge.deployments.models import Deployment
    from tinyforge.serving.app import create_app
    from tinyforge.serving.auth import OpenAccess
    from tinyforge.serving.registry import FolderRegistry

    routes = {route.path for route in create_app(FolderRegistry({}), OpenAccess()).routes}
    assert routes == set(INFERENCE_REQUESTS), "list the new route's model-naming request in INFERENCE_REQUESTS"
    run = trained_run(acme, trained_model_dir)
    created = client_for(alice).post("/api/v1/deployments/", {"name": "assistant", "run": run.pk}, format="json")
    assert created.status_code == 201, created.content
    work_off(queues)
    deployment = Deployment.all_teams.get(pk=created.json()["id"])
    wait_for_status(deployment, "ready")
    keys = {"owner": inference_secret(alice, acme.team), "outsider": inference_secret(charlie, globex.team)}
    for route, request in INFERENCE_REQUESTS.items():
        if request is None:
            continue
        method, path, body = request
        for model in ("assistant", f"deployment-{deployment.pk}"):
            answers = {}
            for who, key in keys.items():
                answers[who] = httpx.request(
                    method, inference_service.base_url + path.replace("{model}", model), timeout=60,
                    headers={"Authorization": f"Bearer {key}"}, json={**body, "model": model} if body else None)
            if path == "/v1/models":
                assert [m["id"] for m in answers["owner"].json()["data"]] == ["assistant"]
                assert answers["outsider"].json()["data"] == [], answers["outsider"].text
                continue
            if model == "assistant":  # the owner's own name for it works; the id form is not a name of hers
                assert answers["owner"].status_code == 200, (route, answers["owner"].text)
            outsider = answers["outsider"]
            assert outsider.status_code == 404 and outsider.json()["error"]["code"] == "model_not_found", (
                route, model, outsider.text)
