"""The house rules, read from the code: imports only go down the layers, `trainables` never
imports `orchestrator`, no package imports itself in a circle, and modules stay small."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

# Lowest first. A module may import its own layer's modules and any lower layer's, never a higher one.
LAYERS = [
    {"trainables"},
    {
        "orchestrator.errors",
        "orchestrator.environ",
        "orchestrator.uris",
        "orchestrator.outcomes",
        "orchestrator.faults",
    },
    {"orchestrator.spec"},
    {"orchestrator.store"},
    {"orchestrator.search", "orchestrator.tracking", "orchestrator.records"},
    {"orchestrator.insights"},
    {"orchestrator.run"},
    {"orchestrator.cli", "orchestrator.__main__", "orchestrator"},
]
MAX_LINES = 330  # about 300: one job per module


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer unit a module belongs to: its package under orchestrator, or the module itself."""
    parts = module.split(".")
    if parts[0] == "trainables":
        return "trainables"
    return ".".join(parts[:2]) if len(parts) >= 2 else module


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


SOURCES = sorted(p for top in ("orchestrator", "trainables") for p in (REPO / top).rglob("*.py"))


def _imports(path: Path) -> list[str]:
    """Every orchestrator/trainables module `path` imports, at any depth (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in ("orchestrator", "trainables")
        ):
            found += [f"{node.module}.{a.name}" if node.module == "orchestrator" else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in ("orchestrator", "trainables")]
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_only_go_down(path):
    me = _unit(_module(path))
    for target in _imports(path):
        assert _layer(_unit(target)) <= _layer(me), f"{_module(path)} ({me}) imports {target}, a higher layer"


def test_trainables_never_import_orchestrator():
    offenders = [
        f"{p.relative_to(REPO)}: {t}"
        for p in SOURCES
        if _unit(_module(p)) == "trainables"
        for t in _imports(p)
        if t.startswith("orchestrator")
    ]
    assert offenders == []


def test_no_module_imports_itself_round_a_circle():
    graph = defaultdict(set)
    modules = {_module(p) for p in SOURCES}
    for path in SOURCES:
        me = _module(path)
        for target in _imports(path):
            while target not in modules and "." in target:  # `from orchestrator.store import x` -> the package
                target = target.rsplit(".", 1)[0]
            if target != me and not me.startswith(target + "."):  # a package's own __init__ re-exports
                graph[me].add(target)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail(" -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.relative_to(REPO)}: more than one job?"


@pytest.mark.parametrize("package", sorted({p.parent for p in SOURCES if p.name == "__init__.py"}), ids=str)
def test_each_package_says_its_job_and_names_its_public_face(package):
    init = ast.parse((package / "__init__.py").read_text())
    assert ast.get_docstring(init), f"{package}: no docstring saying its job"
    if package.parent.name == "orchestrator" or package.name == "feature_cache":
        assert any(isinstance(n, ast.Assign) and n.targets[0].id == "__all__" for n in init.body), package


def test_the_installed_package_holds_every_subpackage():
    """pyproject's package list must reach orchestrator.run, trainables.feature_cache... (an install from
    a wheel, as the Docker image does, would otherwise lack them; an editable install would hide it)."""
    import tomllib
    from setuptools import find_packages

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = set(find_packages(str(REPO), include=include))
    expected = {_module(p) for p in SOURCES if p.name == "__init__.py"}
    assert packaged == expected
