"""Architecture rules for router/, read from the source (AST) without importing it.

1. The import graph of router/ has no cycle, counting imports inside functions too (a lazy import cannot
   hide a cycle); imports under `if TYPE_CHECKING:` do not count.
2. Only router/clock.py (and the test tools in router/testing/) read the clock or sleep; everything else
   is handed a Clock.
3. Every module has a docstring whose summary is one line, and no module is longer than MAX_LINES.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "router"
MAX_LINES = 450

# Where reading the clock or sleeping is allowed: the Clock itself, and the fake server's test tools.
CLOCK_ALLOWED = ("router/clock.py", "router/testing/")

# Qualified names that read the clock or sleep.
CLOCK_NAMES = frozenset(
    {
        "time.monotonic",
        "time.monotonic_ns",
        "time.time",
        "time.time_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "time.sleep",
        "asyncio.sleep",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
    }
)
# Calls that return an event loop: `<one of these>().time()` reads the loop's clock.
LOOP_GETTERS = frozenset({"asyncio.get_running_loop", "asyncio.get_event_loop", "asyncio.new_event_loop"})


@dataclass(frozen=True)
class Module:
    name: str  # dotted: router, router.policy, router.policy.loading, ...
    path: Path
    is_package: bool
    tree: ast.Module
    text: str

    @property
    def where(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        text = path.read_text(encoding="utf-8")
        found[name] = Module(name, path, is_package, ast.parse(text, str(path)), text)
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under `node`, function bodies included, except what is under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


# ---- 1. the import graph ----


def _base(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*up, node.module] if node.module else up)


def _known(name: str) -> str | None:
    """The longest prefix of a dotted name that is a module of router/, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            return prefix
    return None


def _imports(module: Module) -> Iterator[tuple[str, int]]:
    """(imported module of router/, line) for every import in the module, lazy ones included."""
    for node in _walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in MODULES else _known(base)
                if target is not None:
                    yield target, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of its first import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, module in MODULES.items():
        edges: dict[str, int] = {}
        for target, line in _imports(module):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative) that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def _cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a component, as a path that ends where it starts."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    for node in queue:  # breadth first, inside the component
        for child in sorted(graph[node]):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no cycle found in component {component}")  # not reached: a component cycles


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} ({MODULES[a].where}:{graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def test_the_import_graph_of_router_has_no_cycle() -> None:
    graph = _graph()
    assert graph["router"], "the graph reader found no imports in router/__init__.py"  # the test sees edges
    assert "router.policy.errors" in graph["router.policy"]  # relative imports resolve inside a package
    cycles = []
    for component in _components(graph):
        cycle = _cycle(graph, component)
        rest = sorted(set(component) - set(cycle))
        cycles.append(_describe(graph, cycle) + (f"  (also in this knot: {', '.join(rest)})" if rest else ""))
    assert not cycles, "import cycles in router/ (module (file:line of the import) -> ...):\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"d": 4}, "e": {"a": 5}}
    assert _components(graph) == [["a", "b", "c"], ["d"]]
    assert _cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    tree = ast.parse("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from .policy import Policy\n"
                     "def f():\n    from .policy import loading\n    from . import clock\n")
    module = Module("router.example", PACKAGE / "example.py", False, tree, "")
    assert sorted(_imports(module)) == [("router.clock", 7), ("router.policy.loading", 6)]


# ---- 2. the clock ----


def _names(tree: ast.Module) -> dict[str, str]:
    """Local name -> qualified name, for names bound by absolute imports anywhere in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(node: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _qualified(node.value, names)
        return f"{base}.{node.attr}" if base else None
    return None


def _reads_loop_time(node: ast.Call, names: dict[str, str]) -> bool:
    """`loop.time()`, `self._loop.time()`, `asyncio.get_running_loop().time()`, ..."""
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr != "time" or node.args or node.keywords:
        return False
    receiver = func.value
    if isinstance(receiver, ast.Call):
        return _qualified(receiver.func, names) in LOOP_GETTERS
    if isinstance(receiver, ast.Name):
        return "loop" in receiver.id.lower()
    return isinstance(receiver, ast.Attribute) and "loop" in receiver.attr.lower()


def _clock_reads(module: Module) -> Iterator[tuple[int, str]]:
    """(line, what) for every reference to the clock or to a sleep in a module."""
    names = _names(module.tree)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in CLOCK_NAMES:
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            name = _qualified(node, names)
            if name in CLOCK_NAMES:
                yield node.lineno, f"{node.id} (= {name})" if isinstance(node, ast.Name) else name
        elif isinstance(node, ast.Call) and _reads_loop_time(node, names):
            yield node.lineno, "loop.time()"


def test_only_the_clock_module_reads_the_clock_or_sleeps() -> None:
    offenders = [
        f"{module.where}:{line}: {what}"
        for module in MODULES.values()
        if not module.where.startswith(CLOCK_ALLOWED)
        for line, what in sorted(set(_clock_reads(module)))
    ]
    assert not offenders, "read the clock or sleep outside router/clock.py (take a Clock instead):\n" + "\n".join(
        offenders
    )


def test_the_clock_check_sees_every_form() -> None:
    source = (
        "import time, asyncio\nimport time as t\nfrom time import monotonic as mono\n"
        "from datetime import datetime\nimport datetime as dt\n"
        "async def f(loop, clock=time.perf_counter):\n"
        "    time.sleep(1); t.time(); mono(); datetime.now(); dt.datetime.utcnow()\n"
        "    loop.time(); asyncio.get_running_loop().time(); self._loop.time()\n"
        "    await asyncio.sleep(0)\n"
        "    clock.now(); clock.sleep(1); self.clock.wall(); event.time(3); time.strftime('%Y')\n"
    )
    module = Module("router.example", PACKAGE / "example.py", False, ast.parse(source), source)
    found = sorted(set(_clock_reads(module)))
    assert found == [
        (3, "from time import monotonic"),
        (6, "time.perf_counter"),
        (7, "datetime.datetime.now"),
        (7, "datetime.datetime.utcnow"),
        (7, "mono (= time.monotonic)"),
        (7, "time.sleep"),
        (7, "time.time"),
        (8, "loop.time()"),
        (9, "asyncio.sleep"),
    ]


# ---- 3. docstrings and size ----


def _docstring_problem(module: Module) -> str | None:
    doc = ast.get_docstring(module.tree, clean=False)
    if not doc or not doc.strip():
        return "no module docstring"
    lines = doc.splitlines()
    if not lines[0].strip():
        return "the docstring does not start with its summary line"
    if len(lines) > 1 and lines[1].strip():
        return "the docstring's summary runs over more than one line (end it, then a blank line)"
    return None


def test_every_module_has_a_one_line_summary_docstring() -> None:
    offenders = [
        f"{module.where}: {problem}" for module in MODULES.values() if (problem := _docstring_problem(module))
    ]
    assert not offenders, "modules without a one-line summary docstring:\n" + "\n".join(offenders)


def test_no_module_is_longer_than_the_limit() -> None:
    lengths = {module.where: len(module.text.splitlines()) for module in MODULES.values()}
    offenders = [f"{where}: {count} lines" for where, count in sorted(lengths.items()) if count > MAX_LINES]
    assert not offenders, f"modules over {MAX_LINES} lines (split them by concept):\n" + "\n".join(offenders)
