"""Imports point one way: apps.workloads (the example jobs) uses apps.jobs (the system), never the reverse."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOBS_APP = ROOT / "apps" / "jobs"
FORBIDDEN = "apps.workloads"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, as (line, absolute dotted name); `from a import b` yields a.b too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _imports_forbidden(name: str) -> bool:
    return name == FORBIDDEN or name.startswith(FORBIDDEN + ".")


def _jobs_modules() -> list[Path]:
    return sorted(JOBS_APP.rglob("*.py"))


def test_jobs_app__has_modules_to_check() -> None:
    # A moved or renamed app would make the test below pass on nothing.
    names = {_module_name(path) for path in _jobs_modules()}
    assert {"apps.jobs.models", "apps.jobs.services", "apps.jobs.admin"} <= names


@pytest.mark.parametrize("path", _jobs_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_jobs_app__never_imports_the_workloads_app(path: Path) -> None:
    offending = [f"line {line}: {name}" for line, name in _imported_modules(path) if _imports_forbidden(name)]

    assert offending == [], f"{path.relative_to(ROOT)} imports {FORBIDDEN}: {offending}"


@pytest.mark.parametrize(
    ("source", "module_path", "expected"),
    [
        pytest.param("import apps.workloads.models", "apps/jobs/admin.py", True, id="import"),
        pytest.param("from apps.workloads import services", "apps/jobs/admin.py", True, id="from-package"),
        pytest.param("from apps import workloads", "apps/jobs/admin.py", True, id="from-apps"),
        pytest.param("from ..workloads import models", "apps/jobs/admin.py", True, id="relative"),
        pytest.param("from ...workloads import models", "apps/jobs/services/x.py", True, id="relative-deep"),
        pytest.param("from apps.jobs import services", "apps/jobs/admin.py", False, id="own-app"),
        pytest.param("from . import selectors", "apps/jobs/admin.py", False, id="relative-own-app"),
        pytest.param("import apps.workloads_extra", "apps/jobs/admin.py", False, id="similar-name"),
    ],
)
def test_imported_modules__sees_every_form_of_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, module_path: str, expected: bool
) -> None:
    # Given a module at `module_path` (under a stand-in root) holding one import
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / module_path
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")

    # Then the check finds it exactly when it reaches the workloads app
    found = any(_imports_forbidden(name) for _, name in _imported_modules(path))
    assert found is expected
