"""The two set-up commands: `make run` and `make test` install only when something changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _plan(folder: Path, target: str) -> str:
    """What `make TARGET` would run in ``folder``, without running it."""
    # Under `make test` the environment says make is running; the plan must not depend on it.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    result = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=folder, capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _touch_later(path: Path, than: Path) -> None:
    later = than.stat().st_mtime + 2
    os.utime(path, (later, later))


def test_install_runs_only_when_missing_or_changed(tmp_path):
    for name in ("Makefile", "pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "ext", tmp_path / "ext", ignore=shutil.ignore_patterns("*.c", "*.html"))
    for target in ("run", "test"):
        assert "pip install" in _plan(tmp_path, target)  # no .venv yet
    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    newest = max(path.stat().st_mtime for path in tmp_path.rglob("*") if path.is_file())
    os.utime(stamp, (newest + 1,) * 2)
    for target in ("run", "test"):
        plan = _plan(tmp_path, target)
        assert "pip install" not in plan and "-m venv" not in plan, plan
    test_plan = _plan(tmp_path, "test").splitlines()
    assert test_plan == [".venv/bin/ruff check .", ".venv/bin/python -m pytest "]
    assert "fastrnn tune" in _plan(tmp_path, "run") and "runs/main.jsonl" in _plan(tmp_path, "run")
    for changed in ("pyproject.toml", "setup.py", "ext/_rnn_cython.pyx"):
        _touch_later(tmp_path / changed, stamp)
        assert "pip install" in _plan(tmp_path, "test"), changed
        os.utime(stamp, ((tmp_path / changed).stat().st_mtime + 1,) * 2)


def test_readme_gives_exactly_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Install, run, test", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd ", "export "))] == [
        "make test"]
    assert "export FASTRNN_REQUIRE_BACKENDS=numba,cython" in ci
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_license_is_an_spdx_expression_with_its_file():
    # setuptools deprecates `license = { text = ... }` and stops building it on 2027-02-18.
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11's")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert isinstance(project["license"], str) and project["license"] == "MIT"
    assert project["license-files"] and all((ROOT / name).is_file() for name in project["license-files"])
