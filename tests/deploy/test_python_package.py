"""The tinyforge package builds as a wheel, installs into a fresh virtualenv and gives the
`tinyforge` command.

Installing torch and the rest into a new virtualenv copies gigabytes, so the fast test checks two
things separately, honestly:
- pip resolves the wheel's pinned dependencies together (`pip install --dry-run`), from the same
  indexes `make test` installs from: the wheel would install cleanly;
- the wheel, installed with --no-deps into a fresh virtualenv, runs `tinyforge --help` from the
  fresh virtualenv's copy of the package and its console script, borrowing the already-installed
  dependencies through a .pth line that appends this virtualenv's site-packages to sys.path.
  Appended, so the wheel's `tinyforge` wins over the editable checkout (whose import hook lives in
  a .pth file there, which a plain path line does not run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from install_files import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: the checkout is shared, and setuptools writes build/ and egg-info beside
    # the sources. --no-isolation with this virtualenv's setuptools: the build needs no network.
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(
        REPO / "backend",
        source / "backend",
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(out), str(source / "backend")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("tinyforge-*.whl")
    return built


def test_the_wheel_carries_the_package_and_its_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "tinyforge/cli.py" in names
    assert "tinyforge/settings.py" in names
    # Every Python file of the package is in the wheel (no module left behind by packages.find).
    sources = {
        str(path.relative_to(REPO / "backend"))
        for path in (REPO / "backend" / "tinyforge").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= set(names), sorted(sources - set(names))[:10]
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "tinyforge = tinyforge.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_wheels_pinned_dependencies_resolve_together(wheel, tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    assert chosen["tinyforge"] == "0.1.0"
    assert chosen["torch"].split("+")[0] == "2.13.0"
    assert chosen["django"] == "5.2.19"


def test_a_fresh_virtualenv_gets_a_working_tinyforge_command(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    fresh_site = Path(
        subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    )
    (fresh_site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = subprocess.run(
        [str(python), "-c", "import tinyforge; print(tinyforge.__file__)"], capture_output=True, text=True
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(fresh_site), where.stdout

    result = subprocess.run([str(venv / "bin" / "tinyforge"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: tinyforge" in result.stdout
    version = subprocess.run([str(venv / "bin" / "tinyforge"), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.stdout.strip() == "tinyforge 0.1.0"
