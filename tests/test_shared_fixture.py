"""Every test finds ../shared through tests/conftest.py: the `shared_data` fixture, or
`shared_path(...)` where a module-level constant needs it (parametrize lists, module skips,
--regen scripts). So HEADSHOT_SHARED moves the folder for the whole suite, and a missing
folder skips with its reason everywhere. A path to it built by hand fails here, naming the file.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# conftest.py is the one place that knows where the folder is; this file names the patterns.
EXEMPT = {"conftest.py", "test_shared_fixture.py"}

# "shared", "../shared", "./shared/data", "..\\shared\\sites"
_SHARED_PATH = re.compile(r"^(\.{1,2}[/\\])*shared([/\\]|$)")
_PATH_CALLS = {"Path", "PurePath", "PosixPath", "joinpath", "join"}
_SAME_LEVEL = {"resolve", "absolute", "abspath", "realpath", "normpath", "Path", "PurePath", "PosixPath"}
OUTSIDE = float("inf")  # the height of anything reached by climbing out of the repository


def _call_name(node: ast.AST) -> str:
    func = getattr(node, "func", None)
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _steps(h: float, parts: list, root: int) -> float:
    """Walk from height `h` through path parts ('..' up, a name down, a non-literal down)."""
    for part in parts:
        for piece in re.split(r"[/\\]", part) if isinstance(part, str) else [None]:
            h += 1 if piece == ".." else 0 if piece in ("", ".") else -1
            if h > root:
                return OUTSIDE
    return h


def _height(node: ast.AST, names: dict[str, float], root: int) -> float | None:
    """How many folders above the file itself `node` points, when it is built from __file__
    (0: the file, 1: its folder, `root`: the repository, OUTSIDE: climbed out of it on the way);
    None when it is not built from __file__."""
    def up(inner, by):
        h = _height(inner, names, root)
        return None if h is None else OUTSIDE if h + by > root else h + by

    if isinstance(node, ast.Name):
        return 0 if node.id == "__file__" else names.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        return up(node.value, 1)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
        return up(node.value.value, node.slice.value + 1)
    if isinstance(node, ast.Call):
        name, func = _call_name(node), node.func
        if name in _SAME_LEVEL:  # Path(x), x.resolve(), os.path.abspath(x)
            inner = func.value if isinstance(func, ast.Attribute) and not node.args else (node.args or [None])[0]
            return None if inner is None else up(inner, 0)
        if name == "dirname" and node.args:
            return up(node.args[0], 1)
        if name in ("join", "joinpath"):  # os.path.join(base, *parts), base.joinpath(*parts)
            base, parts = (node.args[0], node.args[1:]) if name == "join" and node.args else (
                getattr(func, "value", None), node.args)
            h = None if base is None else _height(base, names, root)
            return None if h is None else _steps(h, [getattr(a, "value", None) for a in parts], root)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        h = _height(node.left, names, root)
        return None if h is None else _steps(h, [getattr(node.right, "value", None)], root)
    return None


def hand_built_paths(source: str, rel: str) -> list[str]:
    """`rel:line: why` for each place in a test module's source that finds ../shared by hand.
    `rel` is the module's path from the repository root (tests/...), which says where its root is."""
    tree = ast.parse(source)
    root = len(Path(rel).parts)  # the repository, in folders above the file
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: dict[str, float] = {}
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))),
                       key=lambda n: n.lineno):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        h = _height(node.value, names, root) if node.value is not None else None
        for t in targets:
            if isinstance(t, ast.Name) and h is not None:
                names[t.id] = h

    found: dict[int, str] = {}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if line is None or line in found:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value == "HEADSHOT_SHARED":
                found[line] = "reads HEADSHOT_SHARED itself (use shared_path() or the shared_data fixture)"
            elif _SHARED_PATH.match(node.value):
                up = parents.get(node)
                if (isinstance(up, ast.BinOp) and isinstance(up.op, ast.Div)) or (
                        isinstance(up, ast.Call) and _call_name(up) in _PATH_CALLS):
                    found[line] = f"builds a path to {node.value!r} (use shared_path() or the shared_data fixture)"
        elif not isinstance(node, ast.Name) and _height(node, names, root) == OUTSIDE:
            # Only the step that climbs out: what is built on it later is the same mistake.
            inner = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
            if not any(_height(c, names, root) == OUTSIDE for c in inner):
                found[line] = "climbs above the repository from __file__ (../shared is found through tests/conftest.py)"
    return [f"{rel}:{line}: {why}" for line, why in sorted(found.items())]


def test_no_test_module_finds_shared_by_hand():
    modules = sorted(p for p in TESTS.rglob("*.py") if p.relative_to(TESTS).as_posix() not in EXEMPT)
    assert len(modules) >= 40  # the walk found the suite
    bad = [hit for p in modules
           for hit in hand_built_paths(p.read_text(encoding="utf-8"), p.relative_to(REPO).as_posix())]
    assert not bad, "test modules that find ../shared by hand (tests/conftest.py does it once):\n" + "\n".join(bad)


def test_checker_catches_the_hand_built_forms():
    rel = "tests/spiders/test_x.py"
    bad = {
        'SITES = Path(__file__).resolve().parents[2].parent / "shared" / "sites"': "climbs above",
        'REPO = Path(__file__).resolve().parents[2]\nSITES = REPO.parent / "sites"': "climbs above",
        'DATA = Path(__file__).parents[3] / "data"': "climbs above",
        'DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "data")': "climbs above",
        'D = Path(__file__).resolve().parent / "../../.." / "data"': "climbs above",
        'D = os.path.join(HERE, "../shared/data")': "builds a path",
        'D = Path(os.environ.get("HEADSHOT_SHARED", "x"))': "reads HEADSHOT_SHARED",
        'def f():\n    return Path.home() / "shared" / "data"': "builds a path",
    }
    for source, why in bad.items():
        hits = hand_built_paths(source, rel)
        assert len(hits) == 1 and why in hits[0] and hits[0].startswith(f"{rel}:"), (source, hits)
    assert hand_built_paths('\n\nX = 1\nDATA = Path("../shared/data")', rel)[0].startswith(f"{rel}:4: ")
    # one line per place, not one per use of what it built
    assert len(hand_built_paths('R = Path(__file__).parents[3]\nA = R / "a"\nB = R / "b"', rel)) == 1


def test_checker_lets_the_rest_through():
    fine = '''"""Reads ../shared/data."""
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
README = REPO / "README.md"
GOLDEN = Path(__file__).resolve().parent / "golden" / "x.json"
SITES = shared_path("sites")
def test(shared_data, tmp_path_factory):
    golden = {}
    golden["shared"] = 1
    tmp_path_factory.mktemp("shared")
    pytest.skip(f"../shared/data is absent ({shared_data})")
'''
    assert hand_built_paths(fine, "tests/spiders/test_x.py") == []


def test_headshot_shared_moves_the_folder_for_module_constants_and_fixtures(tmp_path):
    """An empty HEADSHOT_SHARED: a module that skips at import (a parametrize list over the
    captures) and a test that takes shared_data both skip, naming that folder, although
    ../shared is right there."""
    empty = tmp_path / "no-shared-here"
    empty.mkdir()
    env = {**os.environ, "HEADSHOT_SHARED": str(empty)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/spiders/test_parse_getchu.py",
         "tests/curation/test_ingest_shared.py::test_one_row_per_file"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2 and all(str(empty) in line for line in skips), out.stdout[-3000:]
    assert " passed" not in out.stdout and "2 skipped" in out.stdout, out.stdout[-3000:]
