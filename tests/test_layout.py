"""The arrows between the packages run one way (../shared/DESIGN.md): the spiders and the curation
stages share `media`, never each other, and nothing they ship imports what stands in for the web
(`replicas`). Checked on the source, at every nesting level, function bodies included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> the first-party packages it must never import
FORBIDDEN = {
    "spiders": {"curation", "replicas", "pipelines", "training"},
    "curation": {"replicas", "pipelines", "spiders"},
    "media": {"curation", "spiders", "replicas", "pipelines", "training"},
    "replicas": {"curation", "spiders", "pipelines", "training"},
}


def imported_names(source: str, module: str) -> set[str]:
    """Every module `source` (the text of `module`, dotted) imports, by absolute dotted name:
    import statements anywhere in the tree and importlib.import_module / __import__ calls with
    a literal name."""
    package = module.split(".")[:-1]  # "a.b.c" and "a.b.__init__" both sit in package a.b
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


def modules(package: str) -> list[tuple[str, Path]]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_against_the_arrows(package):
    found = modules(package)
    assert found, f"no modules under {package}/"
    bad = []
    for module, path in found:
        for name in imported_names(path.read_text(encoding="utf-8"), module):
            if name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_walk_sees_imports_hidden_in_functions_and_relative_ones():
    source = """
import json
from . import items
from ..media import decode

def later():
    if True:
        from curation.fetch import FetchConfig
    import replicas.drawn as d
    return __import__("pipelines.cli"), importlib.import_module("training")
"""
    names = imported_names(source, "spiders.pipelines.store")
    assert names == {"json", "spiders.pipelines", "spiders.media", "curation.fetch", "replicas.drawn", "pipelines.cli",
                     "training"}
    assert imported_names("from . import x", "spiders.__init__") == {"spiders"}


def test_nothing_is_left_behind_where_the_modules_moved_from():
    assert not (REPO / "curation" / "decode.py").exists() and not (REPO / "curation" / "synthetic.py").exists()
    assert not (REPO / "spiders" / "replica").exists()
