"""The package's structure: no import cycles, one registry, no backend imported eagerly."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import fastrnn
from fastrnn import backends

PACKAGE = pathlib.Path(fastrnn.__file__).parent
CLI = PACKAGE.parent / "cli"


def _module_name(path: pathlib.Path) -> str:
    if path.is_relative_to(CLI):
        parts = ["fastrnn", "cli", *path.relative_to(CLI).with_suffix("").parts]
    else:
        parts = ["fastrnn", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: not in functions, not under TYPE_CHECKING."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from _top_level_imports(ast.Module(body=node.body + node.orelse, type_ignores=[]))
        elif isinstance(node, ast.Try):
            yield from _top_level_imports(ast.Module(body=node.body, type_ignores=[]))


def import_graph() -> dict[str, set[str]]:
    """fastrnn module -> the fastrnn modules it imports at import time."""
    files = [p for p in PACKAGE.rglob("*.py")] + [p for p in CLI.rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                root = node.module if node.level == 0 else ".".join(filter(None, (base, node.module)))
                targets = [f"{root}.{alias.name}" if f"{root}.{alias.name}" in modules else root for alias in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"fastrnn.backends", "fastrnn.backends._base", "fastrnn.objective", "fastrnn.cli.main"} <= set(graph)
    assert "fastrnn.executors" in graph["fastrnn.backends._base"]  # the walk does see edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_generic_layers_know_nothing_of_the_paper_or_of_backends():
    graph = import_graph()
    for module in ("fastrnn.optimize", "fastrnn.calculus", "fastrnn.executors"):
        assert not {"fastrnn.paper", "fastrnn.objective", "fastrnn.backends"} & graph[module], module


def test_every_registered_backend_has_a_module_and_class():
    for name, entry in backends.REGISTRY.items():
        path = PACKAGE / "backends" / (entry.module.lstrip(".") + ".py")
        assert path.exists(), path
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        assert entry.cls in classes, (path, entry.cls)
        bases = {ast.unparse(base) for base in classes[entry.cls].bases}
        assert bases & {"Backend", "PackedBackend"}, bases  # the base classes of fastrnn.backends._base
        assert f"name = {name!r}" in ast.unparse(classes[entry.cls])


def test_importing_fastrnn_imports_no_backend():
    code = ("import sys, fastrnn, fastrnn.objective, fastrnn.backends; "
            "print(sorted(m for m in sys.modules if m.startswith('fastrnn.backends.') or m == 'numba'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['fastrnn.backends._base']"
