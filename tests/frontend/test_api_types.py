"""The dashboard's API types are generated from the backend's OpenAPI schema and committed;
this fails when either is stale, naming the command that refreshes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
REFRESH = "make api-types"


def test_it_keeps_the_committed_schema_equal_to_the_backends(tmp_path):
    generated = tmp_path / "openapi.yaml"
    # Without DATABASE_URL, as `make api-types` does: Django gives integer fields the database's
    # range (PostgreSQL's int4 vs SQLite's int8), and the schema must not depend on where it is made.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TINYFORGE_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(generated)],
        cwd=REPO / "backend", env=env, check=True, capture_output=True, timeout=120,
    )
    committed = (FRONTEND / "openapi.yaml").read_text()
    assert generated.read_text() == committed, f"frontend/openapi.yaml is stale; refresh it: {REFRESH}"


def test_it_keeps_the_typescript_types_equal_to_the_schema(tmp_path):
    tool = FRONTEND / "node_modules" / ".bin" / "openapi-typescript"
    if not tool.exists():
        pytest.fail("frontend/node_modules is missing: run `make frontend` (make test does) first")
    out = tmp_path / "schema.d.ts"
    subprocess.run([str(tool), "openapi.yaml", "-o", str(out)], cwd=FRONTEND, check=True, capture_output=True, timeout=120)
    committed = (FRONTEND / "src" / "api" / "schema.d.ts").read_text()
    assert out.read_text() == committed, f"frontend/src/api/schema.d.ts is stale; refresh it: {REFRESH}"
