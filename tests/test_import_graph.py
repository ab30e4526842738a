"""The import graph: arrows run one way between the packages, and no module imports itself
back through others.

    pipelines -> {spiders, curation, training} -> manifests
    media: decoding and storing images, and the image features (EfficientNet-Lite0) both the
           curation stages and the training metrics use; imported by spiders, curation and
           training (and pipelines above them); imports manifests only
    replicas: drawn art and site replicas for the demo and tests; imported by pipelines, tests
              and bench only; imports manifests and media only

Every import counts, at any depth: one inside a function still ties the two packages together
and still closes a cycle, only later. A failure lists each offending import as
`file:line imports X`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("manifests", "media", "spiders", "curation", "training", "pipelines", "replicas")

# What each package may import besides itself. A new top-level package needs its line here and
# its name in PACKAGES, or the walk never sees it.
ALLOWED: dict[str, set[str]] = {
    "manifests": set(),
    "media": {"manifests"},
    "spiders": {"manifests", "media"},
    "curation": {"manifests", "media"},
    "training": {"manifests", "media"},  # media.features: the metrics' features, shared with curation
    "pipelines": {"manifests", "media", "spiders", "curation", "training", "replicas"},
    # Replicas stand in for the web: what they serve must not lean on the code under test
    # (tests/test_layout.py holds them to the same).
    "replicas": {"manifests", "media"},
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a package's __init__ is the package's name)
    file: str  # repo-relative path of the importing file
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def module_names(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted name -> file, for every .py under the packages that exist under `root`."""
    out: dict[str, Path] = {}
    for pkg in packages:
        base = root / pkg
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (`a.b.func` -> `a.b`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement (or a literal importlib.import_module call) asks for;
    `from a import b` asks for `a.b`, which _resolve turns into `a` when b is no module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = package[: len(package) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        return [f"{prefix}.{alias.name}" if alias.name != "*" else prefix for alias in node.names]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__"):
            return [node.args[0].value]
    return []


def import_edges(root: Path, packages=PACKAGES) -> list[Edge]:
    """Every import of one of our modules by one of our modules, at any depth of the file."""
    modules = module_names(root, packages)
    edges: list[Edge] = []
    for module, path in modules.items():
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            seen: set[str] = set()
            for name in _imported_names(node, module, is_package):
                target = _resolve(name, modules)
                if target is not None and target != module and target not in seen:
                    seen.add(target)
                    edges.append(Edge(module, target, rel, node.lineno))
    return sorted(edges, key=lambda e: (e.file, e.line, e.target))


def layer_violations(edges: list[Edge]) -> list[Edge]:
    out = []
    for e in edges:
        src, dst = e.source.split(".")[0], e.target.split(".")[0]
        if src != dst and dst not in ALLOWED.get(src, set()):
            out.append(e)
    return out


def cycles(edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each group of modules that import one another (a strongly connected component of two or
    more): one cycle through it, shortest first found, and every import inside the group."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())

    # Tarjan's algorithm, iterative: a deep package would overflow the recursion limit.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    out = []
    for group in sorted(groups):
        members = set(group)
        inside = [e for e in edges if e.source in members and e.target in members]
        out.append((_shortest_cycle(group[0], {m: graph[m] & members for m in group}), inside))
    return out


def _shortest_cycle(start: str, graph: dict[str, set[str]]) -> list[str]:
    """start -> ... -> start, by breadth-first search."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        frontier = nxt
    return [start]


def describe_cycles(found) -> str:
    lines = []
    for cycle, inside in found:
        lines.append("cycle: " + " -> ".join(cycle))
        lines += [f"    {e}" for e in inside]
    return "\n".join(lines)


# ---------------------------------------------------------------- the project

def test_arrows_run_one_way():
    edges = import_edges(REPO)
    assert len({e.source for e in edges}) >= 50  # the walk found the packages (an empty graph proves nothing)
    bad = layer_violations(edges)
    if bad:
        pytest.fail(f"{len(bad)} imports against the arrows (ALLOWED in {Path(__file__).name}):\n"
                    + "\n".join(str(e) for e in bad), pytrace=False)


def test_no_module_imports_itself_through_others():
    edges = import_edges(REPO)
    assert len(edges) >= 100
    found = cycles(edges)
    if found:
        pytest.fail(f"{len(found)} import cycles (each with every import inside it):\n{describe_cycles(found)}",
                    pytrace=False)


# ---------------------------------------------------------------- the checker itself

def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_sees_imports_at_any_depth_relative_and_literal(tmp_path):
    write(tmp_path, {
        "manifests/__init__.py": "",
        "manifests/records.py": "",
        "curation/__init__.py": "",
        "curation/fetch.py": "from manifests import records\n",
        "spiders/__init__.py": "",
        "spiders/run.py": ("import os\n"
                           "def go():\n"
                           "    if True:\n"
                           "        from curation.fetch import get\n"
                           "    import importlib\n"
                           "    importlib.import_module('pipelines.cli')\n"),
        "spiders/sites/__init__.py": "from .. import run\nfrom . import getchu\n",
        "spiders/sites/getchu.py": "from ..run import go\nfrom manifests.records import X\n",
        "pipelines/__init__.py": "",
        "pipelines/cli.py": "import spiders.run, curation.fetch\n",
    })
    edges = import_edges(tmp_path)
    assert {(e.source, e.target) for e in edges} == {
        ("curation.fetch", "manifests.records"), ("spiders.run", "curation.fetch"), ("spiders.run", "pipelines.cli"),
        ("spiders.sites", "spiders.run"), ("spiders.sites", "spiders.sites.getchu"),
        ("spiders.sites.getchu", "spiders.run"), ("spiders.sites.getchu", "manifests.records"),
        ("pipelines.cli", "spiders.run"), ("pipelines.cli", "curation.fetch"),
    }
    assert [str(e) for e in layer_violations(edges)] == [
        "spiders/run.py:4 imports curation.fetch", "spiders/run.py:6 imports pipelines.cli"]


def test_checker_reports_each_cycle_with_its_imports(tmp_path):
    write(tmp_path, {
        "curation/__init__.py": "",
        "curation/a.py": "from curation import b\n",
        "curation/b.py": "def f():\n    from curation.c import g\n",
        "curation/c.py": "import curation.a\n",
        "curation/d.py": "from . import e\n",
        "curation/e.py": "from .d import x\n",
        "curation/f.py": "import curation.a\n",  # into a cycle, not part of it
    })
    found = cycles(import_edges(tmp_path))
    assert [cycle for cycle, _ in found] == [
        ["curation.a", "curation.b", "curation.c", "curation.a"], ["curation.d", "curation.e", "curation.d"]]
    assert [str(e) for e in found[0][1]] == [
        "curation/a.py:1 imports curation.b", "curation/b.py:2 imports curation.c", "curation/c.py:1 imports curation.a"]
    assert "curation/f.py" not in describe_cycles(found)
