"""The package's structure: no import cycles (not even for type checking), modules of a readable
size, one registry, no backend imported eagerly."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

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


def _every_import(tree: ast.Module):
    """Every import statement of the module: at import time, under ``if TYPE_CHECKING:``, in
    functions and methods, in ``try`` blocks and their handlers."""
    return (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


#: Modules imported by name with importlib (not visible as import statements): module -> targets.
#: The backends registry imports each backend's module when the backend is first asked for.
DYNAMIC_IMPORTS = {
    "fastrnn.backends": {f"fastrnn.backends{entry.module}" for entry in backends.REGISTRY.values()},
    "fastrnn.running.executors": {"fastrnn.running.dask_executor"},  # make_executor("dask")
}


def _modules() -> dict[str, pathlib.Path]:
    files = [p for p in PACKAGE.rglob("*.py")] + [p for p in CLI.rglob("*.py")]
    return {_module_name(p): p for p in files}


def import_graph(everywhere: bool = False) -> dict[str, set[str]]:
    """fastrnn module -> the fastrnn modules it imports at import time, or with ``everywhere``
    also for type checking, inside functions and through importlib (:data:`DYNAMIC_IMPORTS`)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = set(DYNAMIC_IMPORTS.get(name, ())) if everywhere else set()
        for node in (_every_import(tree) if everywhere else _top_level_imports(tree)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                root = node.module if node.level == 0 else ".".join(filter(None, (base, node.module)))
                targets = [_from_import_target(name, root, alias.name, modules) for alias in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _from_import_target(importer: str, root: str, name: str, modules: dict[str, pathlib.Path]) -> str | None:
    """The module of ours that ``from root import name`` in ``importer`` depends on: the submodule
    ``root.name`` if it is one of ours, else ``root``, except where ``root`` is the importer's own
    package and ``name`` is not one of its names: then a submodule that is not Python source (a
    compiled extension such as ``fastrnn.backends._rnn_cython``), none of ours."""
    if f"{root}.{name}" in modules:
        return f"{root}.{name}"
    if importer.startswith(root + ".") and root in modules and name not in _module_names(modules[root]):
        return None
    return root


def _module_names(path: pathlib.Path) -> set[str]:
    """The names a module binds outside its functions and classes (under if and try too)."""
    names = set()
    pending = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, (ast.stmt, ast.excepthandler))]
    return names


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
    assert "fastrnn.running.runs" in graph["fastrnn.backends._base"]  # the walk does see edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_one_that_imports_it_back_even_for_type_checking_or_in_a_function():
    """No cycle even counting imports under ``if TYPE_CHECKING:``, function-local imports and
    importlib's: the layers stay one above the other (backends below executors, fastrnn.running.runs
    below both; a backend module below the registry that loads it)."""
    graph = import_graph(everywhere=True)
    assert "fastrnn.backends" in graph["fastrnn.running.executors"]  # TYPE_CHECKING imports are seen
    assert "fastrnn.optimize.methods" in graph["fastrnn.bench.dask_comparison"]  # so are imports in functions
    assert "fastrnn.backends._numba_kernel" in graph["fastrnn.bench.phases"]
    assert graph["fastrnn.running.runs"] <= {"fastrnn.network.model"}  # below backends and executors
    for name in ("fastrnn.backends._base", "fastrnn.backends", "fastrnn.running.dask_executor"):
        assert "fastrnn.running.executors" not in graph[name], name
    assert not {"fastrnn.backends.reference", "fastrnn.backends.numba", "fastrnn.backends.cython"} & graph[
        "fastrnn.backends._base"]  # the base knows no concrete backend
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_importlib_imports_are_the_listed_ones():
    """DYNAMIC_IMPORTS is complete: only the modules it names import by name."""
    calls = {name for name, path in _modules().items()
             if any(isinstance(node, ast.Attribute) and node.attr == "import_module"
                    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))}
    assert calls == set(DYNAMIC_IMPORTS)


#: Modules allowed over MAX_LINES: the kernels only, long by nature (one compiled unit, each trick
#: beside the loop it speeds up). The list only shrinks.
LONG_MODULES = {
    "fastrnn.backends._numba_kernel",  # the numba kernel
}
MAX_LINES = 600


def test_no_module_is_over_600_lines_but_the_listed_ones():
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES and name not in LONG_MODULES}
    assert not long, f"over {MAX_LINES} lines: {long}; split by concern (fastrnn/bench/ shows how)"
    assert LONG_MODULES <= set(lines), LONG_MODULES - set(lines)  # a module that was renamed or split leaves the list


def test_every_package_folder_is_listed_in_pyproject():
    """setuptools installs only the packages pyproject lists: a folder missing there is missing
    from a wheel (an editable install would not show it)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11's")
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {_module_name(init) for init in PACKAGE.rglob("__init__.py")} | {"fastrnn.cli", "fastrnn.data"}
    assert listed == folders


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_generic_layers_know_nothing_of_the_paper_or_of_backends():
    graph = import_graph()
    generic = [name for name in graph if name.startswith("fastrnn.optimize")] + ["fastrnn.running.executors"]
    assert {"fastrnn.optimize.methods", "fastrnn.optimize.calculus", "fastrnn.optimize.samplers"} <= set(generic)
    for module in generic:
        known = {name for name in graph[module] if name.startswith(("fastrnn.objective", "fastrnn.backends"))}
        assert not known, (module, known)


#: The folders are layers: a subpackage imports none of the ones above it (counting imports for
#: type checking and in functions). Bottom to top: the network, its backends and the running of
#: batches (which lean on each other module by module, without a cycle); the methods, which know
#: no RNN; the objective; tuning; and the benchmarks and the command line over everything.
ABOVE = {
    "network": {"objective", "optimize", "tuning", "bench", "cli"},
    "backends": {"objective", "optimize", "tuning", "bench", "cli"},
    "running": {"objective", "optimize", "tuning", "bench", "cli"},
    "optimize": {"network", "backends", "running", "objective", "tuning", "bench", "cli"},
    "objective": {"tuning", "bench", "cli"},
    "tuning": {"bench", "cli"},
}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_each_folder_imports_only_the_layers_below_it():
    graph = import_graph(everywhere=True)
    assert set(ABOVE) <= {_layer(name) for name in graph}
    wrong = {(name, target) for name, targets in graph.items() if _layer(name) in ABOVE
             for target in targets if _layer(target) in ABOVE[_layer(name)]}
    assert not wrong, sorted(wrong)


#: Older paths README documented, kept as the very module at its canonical path (no copy).
OLD_PATHS = {"fastrnn.calculus": "fastrnn.optimize.calculus", "fastrnn.problem": "fastrnn.optimize.problem",
             "fastrnn.samplers": "fastrnn.optimize.samplers", "fastrnn.settings": "fastrnn.objective.settings",
             "fastrnn.training": "fastrnn.network.training"}


def test_the_names_readme_documents_keep_working():
    code = ("import importlib; import fastrnn.calculus, fastrnn.problem, fastrnn.samplers, fastrnn.settings, "
            "fastrnn.training; "
            "from fastrnn.calculus import gradient, hessian; from fastrnn.problem import Problem; "
            "from fastrnn.samplers import history_from_records; "
            "from fastrnn.settings import Evaluation, HeldoutSettings, PaperSettings; from fastrnn.training import train; "
            "from fastrnn.objective import Objective; from fastrnn.optimize import METHOD_TABLE, Status, minimize; "
            "from fastrnn.tuning import HELDOUT_SETTINGS, tune; from fastrnn.backends import get_backend; "
            "from fastrnn.bench import IdealTasks; "
            f"print(all(importlib.import_module(old) is importlib.import_module(new) for old, new in {OLD_PATHS!r}.items()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
    shims = {name for name, path in _modules().items() if "sys.modules[__name__]" in path.read_text(encoding="utf-8")}
    assert shims == set(OLD_PATHS)  # and no other


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
