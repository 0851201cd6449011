"""The code's shape, checked: one job per file (no file over ~600 lines), no import of another
module's private names, no import cycle at module level, every import (lazy ones included)
names something that exists, and docstrings cite only files inside the repository."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"aedfast": ROOT / "aedfast", "aedfast.kernels": ROOT / "kernels"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Every module of the library: dotted name -> file."""
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            if "kernels" in f.relative_to(folder).parts:  # aedfast/kernels is a symlink
                continue
            rel = f.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path):
    """(imported module, imported names, top-level?) for every `from X import ...`."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    top = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            top.add(id(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield _resolve(name, node, is_pkg), [a.name for a in node.names], id(node) in top


def test_modules_found():
    assert {"aedfast.detector", "aedfast.step", "aedfast.stream", "aedfast.scoring",
            "aedfast.frames", "aedfast.checkpoint", "aedfast.kernels.smoothing"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_file_length(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {n} lines (> {MAX_LINES})"


def test_no_private_names_from_other_modules():
    bad = []
    for name, path in MODULES.items():
        for mod, names, _ in _imports(name, path):
            if mod.startswith("aedfast") and mod != name:
                bad += [f"{name}: from {mod} import {n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_every_import_resolves():
    """Lazy imports inside functions included: a missing name fails here, not in a user's
    command after minutes of work."""
    bad = []
    for name, path in MODULES.items():
        for mod, names, _ in _imports(name, path):
            if not mod.startswith("aedfast"):
                continue
            m = importlib.import_module(mod)
            for n in names:
                if n != "*" and not hasattr(m, n):
                    try:
                        importlib.import_module(f"{mod}.{n}")
                    except ImportError:
                        bad.append(f"{name}: from {mod} import {n}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_at_module_level():
    graph: dict[str, set[str]] = {n: set() for n in MODULES}
    for name, path in MODULES.items():
        for mod, names, top in _imports(name, path):
            if not top:
                continue
            for target in (mod, *(f"{mod}.{n}" for n in names)):
                if target in MODULES and target != name:
                    graph[name].add(target)
    # a package's __init__ importing its own submodules is not a cycle of jobs
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name in PACKAGES or
                                                        t.startswith(name + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                cyc = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cyc))
            if t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_docstrings_cite_files_in_the_repository():
    design = ROOT / "docs" / "design.md"
    assert design.is_file()
    sections = set(re.findall(r"^## (\d+)\.", design.read_text(), flags=re.M))
    bad = []
    for folder in (ROOT / "aedfast", ROOT / "kernels", ROOT / "tests", ROOT / "bench"):
        for f in folder.rglob("*.py"):
            if f.name == Path(__file__).name:
                continue
            text = f.read_text()
            if re.search(r"\bSPEC\b", text):
                bad.append(f"{f.relative_to(ROOT)} cites SPEC, which is not in the repository")
            for sec in re.findall(r"docs/design\.md §(\d+)", text):
                if sec not in sections:
                    bad.append(f"{f.relative_to(ROOT)}: docs/design.md §{sec}: no such section")
    assert not bad, "\n".join(sorted(set(bad)))
