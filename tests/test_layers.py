"""Imports run one way, down the layers: each core package imports only the packages below it (and
itself), and no module of the core imports itself back through others. Every import counts: at the
top of a module, deferred inside a function, or under ``if TYPE_CHECKING``. The order is the one
``docs/architecture.md`` states, read from it, so the document and the code cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "sketchbench"
DOC = (ROOT / "docs" / "architecture.md").read_text()
#: the facade modules at the top: the public surface plugins and users import
TOP = "sketchbench"


def stated_layers() -> list[str]:
    """The layers, bottom first, as docs/architecture.md states them (``Layers, bottom to top: ...``)."""
    line = re.search(r"^Layers, bottom to top: (.+)$", DOC, flags=re.M)
    assert line, "docs/architecture.md must state the layer order in a line 'Layers, bottom to top: `a` → `b` ...'"
    return re.findall(r"`([a-z_]+)`", line.group(1))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in CORE.rglob("*.py")}


def layer_of(module: str) -> str:
    """``sketchbench.run.loop`` → ``run``; the facade modules (``sketchbench``, ``sketchbench.training``,
    ``sketchbench.testing``, ``sketchbench.__main__``) → ``sketchbench``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (CORE / parts[1] / "__init__.py").exists() else TOP


def imports(path: Path, known: dict[str, Path], source: str | None = None) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a core module in ``path`` (or in ``source`` as if it
    stood there), wherever it stands."""
    here = module_name(path)
    out = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            hits = [n for n in names if n in known] or [target]
        elif isinstance(node, ast.Import):
            hits = [a.name for a in node.names]
        else:
            continue
        for name in hits:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != here:
                out.append((node.lineno, name))
    return out


def test_the_stated_layers_are_the_core_packages():
    layers = stated_layers()
    packages = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").exists())
    assert sorted(layers) == sorted([*packages, TOP]), f"docs/architecture.md orders {layers}; the core has {packages}"
    assert layers[-1] == TOP, "the public surface (sketchbench, .training, .testing) sits on top"


def test_each_package_imports_only_packages_below_it():
    rank = {name: i for i, name in enumerate(stated_layers())}
    known = modules()
    upward = []
    for name, path in sorted(known.items()):
        for line, target in imports(path, known):
            if rank[layer_of(target)] > rank[layer_of(name)]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({layer_of(target)} is above {layer_of(name)})")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_module_imports_itself_back():
    known = modules()
    graph = {name: {t for _, t in imports(path, known)} for name, path in known.items()}
    # Tarjan's strongly connected components: any with more than one module is an import circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_deferred_and_type_only_imports():
    """The rule cannot pass by not looking: an import inside a function or under TYPE_CHECKING is seen."""
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sketchbench.run.plan import Plan\n"
              "def f():\n    from sketchbench.cli import main\n    from . import canvas\n")
    found = {t for _, t in imports(CORE / "base" / "errors.py", modules(), source)}
    assert found == {"sketchbench.run.plan", "sketchbench.cli.main", "sketchbench.base.canvas"}


def test_the_query_package_imports_nothing_of_the_core():
    """``sketchbench_query`` sits below the core (torch-free deployment): the core imports it, never back."""
    bad = []
    for path in sorted((ROOT / "sketchbench_query").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "sketchbench"]
    assert not bad, "\n".join(bad)
