"""The package's layering, read from its source: the core imports neither Airflow nor the glue, and no
module imports itself back through others.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency), except
under ``if TYPE_CHECKING:`` (never executed: type checkers only). An edge
to a parent package (``from airflow_resilience import context``) counts as one to the module it names:
Python loads parent packages first anyway, and the top-level facade only re-exports.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
PKG = "airflow_resilience"

#: Modules allowed to import Airflow and the glue (``airflow_resilience.airflow``).
GLUE = (f"{PKG}.airflow", f"{PKG}.providers")
#: Outside the glue, but allowed to import it, each for a stated reason.
EXEMPT = {
    # The public facade (``from airflow_resilience import ResumableOperator``): lazy re-exports only.
    PKG: "public facade",
    # Test tools and drills drive a real Airflow in subprocesses; DAG files are Airflow's input, not modules.
    f"{PKG}.testing": "test tools",
    f"{PKG}.drills": "drills",
}


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in (SRC / PKG).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level external names) that ``module`` imports anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    external: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                targets.append(full if _resolve(full) == full else source)
        for target in targets:
            if target == PKG or target.startswith(PKG + "."):
                resolved = _resolve(target)
                if resolved and resolved != module:
                    ours.add(resolved)
            else:
                external.add(target.split(".")[0])
    return ours, external


GRAPH = {module: imports_of(module) for module in MODULES}


def _is(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _exempt(module: str) -> bool:
    return module == PKG or _is(module, [k for k in EXEMPT if k != PKG])


CORE = sorted(m for m in MODULES if not _is(m, GLUE) and not _exempt(m) and ".dags." not in m)


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_airflow_and_no_glue(module: str) -> None:
    ours, external = GRAPH[module]
    assert "airflow" not in external, f"{module} imports Airflow: move that to {PKG}.airflow (or compat)"
    glue = sorted(m for m in ours if _is(m, GLUE))
    assert not glue, f"{module} imports the glue {glue}: hand it what it needs through {PKG}.context"


def test_core_is_not_empty() -> None:
    # The walk would pass vacuously if it found nothing: the core modules are known by name.
    for name in ("checkpoint", "watermark", "resumable", "context", "causes", "budget", "ledger", "judge"):
        assert f"{PKG}.{name}" in CORE


def _cycles() -> list[list[str]]:
    graph = {m: {t for t in GRAPH[m][0] if t != PKG} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_walk_sees_lazy_imports() -> None:
    # host.py imports runtime at the top; the listener imports host inside a function.
    assert f"{PKG}.airflow.host" in GRAPH[f"{PKG}.airflow.plugin"][0]
    assert f"{PKG}.airflow.runtime" in GRAPH[f"{PKG}.airflow.host"][0]
