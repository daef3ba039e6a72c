"""The arrows between the parts of the package point one way (docs/architecture.md): read every
import statement of the source, at module level or inside a function, and fail on one that points
back.

- ml/, connectors/, serving/ and evaluation/ never import Django, DRF, RQ or a Django app: the CLI, the
  workers, the inference service and an exported bundle run them as they are.
- core/ imports no app: apps register with core (their tracked-job kinds, their accounts).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "backend" / "tinyforge"
# Every Django app of the package is a folder with an apps.py; core is the one they build on.
APPS = sorted(p.parent.name for p in PACKAGE.glob("*/apps.py"))
FRAMEWORKS = ("django", "rest_framework", "drf_spectacular", "django_filters", "django_rq", "rq", "axes")


def imports_of(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import in the package's source, migrations aside."""
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            found += [(str(path.relative_to(PACKAGE)), node.lineno, name) for name in names]
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted({f"{file}:{line} imports {name}" for file, line, name in imports_of(package)
                   if any(name == f or name.startswith(f + ".") for f in forbidden)})


def test_the_apps_are_found():
    assert {"core", "accounts", "projects", "datasets", "training", "deployments"} <= set(APPS)


@pytest.mark.parametrize("package", ["ml", "connectors", "serving", "evaluation"])
def test_the_pure_python_layers_never_import_django_or_an_app(package):
    assert violations(package, FRAMEWORKS + tuple(f"tinyforge.{app}" for app in APPS)) == []


def test_ml_never_imports_serving_or_the_evaluation_above_it():
    """Evaluations answer through serving's engine, so they sit above both; ml stays below."""
    found = violations("ml", ("tinyforge.serving", "tinyforge.evaluation"))
    # A bundle's server script is a file ml copies into the bundle, not a module ml imports.
    assert [v for v in found if not v.startswith("ml/templates/bundle/")] == []


def test_core_imports_no_app():
    assert violations("core", tuple(f"tinyforge.{app}" for app in APPS if app != "core")) == []


def test_it_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The check itself: an import hidden in a function body is found."""
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "mod.py").write_text("def f():\n    from tinyforge.core import storage\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert violations("sample", ("tinyforge.core",)) == ["sample/mod.py:2 imports tinyforge.core",
                                                         "sample/mod.py:2 imports tinyforge.core.storage"]
