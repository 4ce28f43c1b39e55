"""The public surface is enforced, not only documented: the built-in plugins (and the example
plugin) are written as a third party would write them, so they may import only the names in
``sketchbench.__all__``, ``sketchbench.training.__all__`` and ``sketchbench.testing.__all__``; the
plugin guide lists exactly that surface."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ("sketchbench", "sketchbench.training", "sketchbench.testing")
PLUGIN_FILES = sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "docs" / "examples").rglob("*.py")])


def _surface() -> dict[str, set[str]]:
    return {name: set(importlib.import_module(name).__all__) for name in PUBLIC}


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` of every import of sketchbench in a file (``name`` None for ``import x``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "sketchbench":
            out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "sketchbench"]
    return out


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_surface(path):
    surface = _surface()
    bad = []
    for line, module, name in _imports(path):
        if module not in surface:
            bad.append(f"line {line}: {module} is not a public module ({', '.join(PUBLIC)})")
        elif name is not None and name not in surface[module]:
            bad.append(f"line {line}: {module}.{name} is not in {module}.__all__")
    assert not bad, f"{path.relative_to(ROOT)} imports internals: " + "; ".join(bad)


def test_the_plugin_guide_lists_exactly_the_surface():
    doc = (ROOT / "docs" / "writing-plugins.md").read_text()
    section = doc.split("## The public API", 1)[1].split("\n## ", 1)[0]
    for module, names in _surface().items():
        listed = {n.strip("`") for n in section.split(f"`{module}`:", 1)[1].split("\n\n", 1)[0].replace(",", " ").split()
                  if n.startswith("`")}
        assert listed == names, f"{module}: documented {sorted(listed - names)} but not exported; exported {sorted(names - listed)} but not documented"
