"""The arrows between the parts of the package point one way (docs/architecture.md): read every
import statement of the source, at module level or inside a function, and fail on one that points
back.

- ml/, connectors/, serving/ and evaluation/ never import Django, DRF, RQ or a Django app: the CLI, the
  workers, the inference service and an exported bundle run them as they are.
- core/ imports no app: apps register with core (their tracked-job kinds, their accounts), and
  core's tables hold no foreign key to an app's, tenancy aside (an event's subject is generic).
- ml/ never imports serving/ or exports/: bundles (the engine plus the server) are assembled one
  level up, in exports/, which serving/ never imports either.
- No module imports itself through others (no import cycles anywhere in the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "backend" / "tinyforge"
# Every Django app of the package is a folder with an apps.py; core is the one they build on.
APPS = sorted(p.parent.name for p in PACKAGE.glob("*/apps.py"))
# The layers every process (CLI, workers, inference service, an exported bundle) runs as they are.
PURE_LAYERS = sorted(name for name in ("ml", "connectors", "serving", "exports", "evaluation")
                     if (PACKAGE / name).is_dir())
FRAMEWORKS = ("django", "rest_framework", "drf_spectacular", "django_filters", "django_rq", "rq", "axes")


def file_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in one file, at module level or in a function;
    `from a.b import c` counts as importing a.b and a.b.c (c may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, name) for name in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]]
    return found


def source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts and "templates" not in p.parts)


def imports_of(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import in the package's source, migrations aside."""
    return [(str(path.relative_to(PACKAGE)), line, name)
            for path in source_files(PACKAGE / package) for line, name in file_imports(path)]


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted({f"{file}:{line} imports {name}" for file, line, name in imports_of(package)
                   if any(name == f or name.startswith(f + ".") for f in forbidden)})


def test_the_apps_are_found():
    assert {"core", "accounts", "projects", "datasets", "training", "deployments"} <= set(APPS)
    assert {"ml", "connectors", "serving", "exports"} <= set(PURE_LAYERS)


@pytest.mark.parametrize("package", PURE_LAYERS)
def test_the_pure_python_layers_never_import_django_or_an_app(package):
    assert violations(package, FRAMEWORKS + tuple(f"tinyforge.{app}" for app in APPS)) == []


def test_ml_never_imports_serving_or_the_evaluation_above_it():
    """Evaluations answer through serving's engine, so they sit above both; ml stays below."""
    found = violations("ml", ("tinyforge.serving", "tinyforge.evaluation"))
    # A bundle's server script is a file ml copies into the bundle, not a module ml imports.
    assert [v for v in found if not v.startswith("ml/templates/bundle/")] == []


def test_core_imports_no_app():
    assert violations("core", tuple(f"tinyforge.{app}" for app in APPS if app != "core")) == []


# What every team-owned record is scoped through, and who did what in the audit log: the only
# tables of the apps that core's tables may point at.
TENANCY = {"accounts.Team", "accounts.ApiToken", "projects.Project"}


def app_references(app_label: str) -> list[str]:
    """'model.field -> app.Model' for every relation of the app's models to another of our apps'
    models (the tenancy's aside): foreign keys, one-to-ones, many-to-manys, generic relations."""
    from django.apps import apps

    ours = {f"tinyforge.{app}" for app in APPS}
    found = []
    for model in apps.get_app_config(app_label).get_models():
        for field in model._meta.get_fields(include_hidden=True):
            target = field.related_model if field.is_relation and not field.auto_created else None
            if target is None or target._meta.app_config.name not in ours:
                continue
            label = target._meta.label
            if target._meta.app_label != app_label and label not in TENANCY:
                found.append(f"{model._meta.label}.{field.name} -> {label}")
    return sorted(found)


def test_core_tables_hold_no_link_to_an_app():
    assert app_references("core") == []


def test_the_table_check_sees_links_to_an_app():
    """The check itself: deployments' tables point at training's (a deployment's run)."""
    assert "deployments.Deployment.run -> training.TrainingRun" in app_references("deployments")


def test_the_engine_never_imports_serving_or_exports():
    assert violations("ml", ("tinyforge.serving", "tinyforge.exports")) == []


def test_serving_never_imports_exports():
    assert violations("serving", ("tinyforge.exports",)) == []


def module_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    modules = {".".join(("tinyforge", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
               for path in source_files(PACKAGE)}
    return {name: {imported for _line, imported in file_imports(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles(module_graph()) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_it_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The check itself: an import hidden in a function body is found."""
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "mod.py").write_text("def f():\n    from tinyforge.core import storage\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert violations("sample", ("tinyforge.core",)) == ["sample/mod.py:2 imports tinyforge.core",
                                                         "sample/mod.py:2 imports tinyforge.core.storage"]
