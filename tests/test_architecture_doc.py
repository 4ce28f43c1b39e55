"""docs/architecture.md names every package and module of the core: the map stays the territory."""

from __future__ import annotations

import re
from pathlib import Path

import sketchbench

ROOT = Path(sketchbench.__file__).parent
DOC = (ROOT.parent / "docs" / "architecture.md").read_text()


def _table_rows() -> dict[str, str]:
    """package name -> its row of the packages table (| `pkg` | what | modules |)."""
    core = DOC.split("## The plugins")[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", core, flags=re.M)}


def test_every_core_package_and_module_is_on_the_map():
    rows = _table_rows()
    packages = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages, "no packages found"
    missing_packages = [p for p in packages if p not in rows]
    assert not missing_packages, f"docs/architecture.md has no row for {missing_packages}"
    assert not set(rows) - set(packages), f"docs/architecture.md names packages that do not exist: {set(rows) - set(packages)}"
    missing = [f"{p}.{m.stem}" for p in packages for m in sorted((ROOT / p).glob("*.py"))
               if not m.stem.startswith("_") and f"`{m.stem}`" not in rows[p]]
    assert not missing, f"docs/architecture.md does not name the modules {missing}"
