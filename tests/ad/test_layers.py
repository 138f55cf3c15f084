"""The engine's import graph stays layered: no module imports one that (indirectly) imports it.

Read from the source (``ast``), not by importing: ``import fluxml`` loads the whole engine
first, which would hide a circle. A module-level import of ``fluxml.ad.rules.indexing`` runs
``fluxml/ad/rules/__init__.py`` first, so it counts as an import of that package too.
``fluxml/ad/__init__.py`` (which gathers the public names) is left out: nothing imports it.

An import inside a function breaks a circle at import time by hiding it; each is allowed only
with a ``# lazy: why`` comment on the line above (a heavy or optional module, or one above the
engine).
"""

from __future__ import annotations

import ast
from pathlib import Path

import fluxml

SRC = Path(fluxml.__file__).parent.parent
PACKAGES = ("fluxml.ad", "fluxml.compiler")  # packages whose modules the graph covers


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        root = SRC / package.replace(".", "/")
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The covered modules an import statement loads (with the packages above them)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                 else node.module for a in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        for k in range(len(parts), 0, -1):  # the module and the packages that contain it
            prefix = ".".join(parts[:k])
            if prefix in MODULES and prefix not in PACKAGES:
                out.append(prefix)
    return out


def _imports(path: Path):
    """(module-level targets, [(line, targets, comment above)] of imports inside functions)."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    top = [t for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
           for t in _targets(node)]
    lazy = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                    lazy.append((node.lineno, node, above))
    return top, lazy


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        if name in PACKAGES:
            continue
        top, _ = _imports(path)
        graph[name] = {t for t in top if t != name}
    return graph


def _cycle(graph):
    """One import circle, as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_engine_import_graph_has_no_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_core_imports_nothing_of_the_engine_above_it():
    assert _graph()["fluxml.ad.core"] == {"fluxml.ad.errors", "fluxml.ad.weak"}
    assert _graph()["fluxml.ad.weak"] == set()


def test_each_trace_kind_sits_above_the_core():
    graph = _graph()
    below = {"fluxml.ad.core", "fluxml.ad.sweep", "fluxml.ad.mutation", "fluxml.ad.define"}
    for trace in ("fluxml.ad.reverse", "fluxml.ad.forward"):
        assert "fluxml.ad.core" in graph[trace]
        for module in below:
            assert trace not in graph[module], f"{module} imports {trace}"


def test_every_lazy_import_says_why():
    for name, path in MODULES.items():
        _, lazy = _imports(path)
        for line, _, above in lazy:
            assert above.startswith("# lazy:"), (
                f"{path.relative_to(SRC)}:{line}: an import inside a function needs a "
                "`# lazy: why` comment on the line above (or move it to the top)")


def test_operators_find_their_primitives_at_import():
    """methods.py reads the operators' primitives from UFUNCS once, when it is imported: the
    rule families that fill those entries must load first (else every `x * y` would take the
    slow general path, with the same result)."""
    from fluxml.ad import methods
    from fluxml.ad.core import UFUNCS, Primitive, Tracer

    for name, uf in methods._OPERATORS.items():
        if type(UFUNCS.get(uf)) is Primitive:
            for method in (f"__{name}__", f"__r{name}__"):
                assert "prim" in getattr(Tracer, method).__code__.co_freevars, method
