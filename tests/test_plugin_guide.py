"""A plugin written from docs/writing-plugins.md alone installs and runs: the files of "A worked
dynamic method" are taken from the page's code blocks (```` ```python file=PATH ````), built and
installed with pip (offline), found through their entry point, and run next to the built-in
methods. The page cannot drift from the interface without this test failing."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sketchbench
import sketchbench.training

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-plugins.md"
PLUGIN_ENV = ("SKETCHBENCH_LOAD_PLUGINS", "SKETCHBENCH_DISABLE_PLUGINS", "SKETCHBENCH_STRICT_PLUGINS")


def guide_files(section: str) -> dict[str, str]:
    """``{path: text}`` of the code blocks marked ``file=PATH`` in one section of the guide."""
    text = GUIDE.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^```\w+ file=(\S+)\n(.*?)^```$", text, flags=re.M | re.S)}


def cli(*args: str, pythonpath: list[Path], cache: Path) -> subprocess.CompletedProcess:
    """The real command line in a fresh interpreter, with only the plugin under test loaded beside the built-ins."""
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
    env.update({"PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, ROOT, ROOT / "plugins"])), "OMP_NUM_THREADS": "1",
                "SKETCHBENCH_LOAD_PLUGINS": "strokerule", "SKETCHBENCH_CACHE_DIR": str(cache), "TQDM_DISABLE": "1"})
    return subprocess.run([sys.executable, "-c", "from sketchbench.cli.main import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_the_worked_dynamic_method_is_complete_and_public():
    files = guide_files("A worked dynamic method")
    assert set(files) == {"pyproject.toml", "sketchbench_strokerule/__init__.py", "sketchbench_strokerule/method.py"}
    surface = {"sketchbench": set(sketchbench.__all__), "sketchbench.training": set(sketchbench.training.__all__)}
    for path, text in files.items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sketchbench"):
                assert node.module in surface, f"{path} imports {node.module}, not a public module"
                assert {a.name for a in node.names} <= surface[node.module], f"{path} imports internals of {node.module}"


def install_from_guide(section: str, tmp_path: Path) -> Path:
    """The plugin of one section of docs/writing-plugins.md, written out and pip-installed into a
    folder of its own (skips where pip or setuptools cannot build offline); returns that folder."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: pip cannot build the plugin offline")
    src = tmp_path / "src"
    for path, text in guide_files(section).items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--disable-pip-version-check", "--target", str(site), str(src)],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode != 0 and "No module named pip" in pip.stderr:
        pytest.skip("pip is not available in this environment")
    assert pip.returncode == 0, pip.stderr
    return site


def test_the_worked_dynamic_method_installs_lists_and_runs(tmp_path):
    site = install_from_guide("A worked dynamic method", tmp_path)

    listed = cli("list", "methods", "--format", "json", pythonpath=[site], cache=tmp_path / "cache")
    assert listed.returncode == 0, listed.stderr
    row = {r["name"]: r for r in json.loads(listed.stdout)}["stroke-rule"]
    assert row["origin"] == "strokerule" and row["dynamic"] is True and row["kind"] == "baseline"

    out = tmp_path / "r.json"
    run = cli("run", "-m", "stroke-rule", "-d", "tiny", "-p", "smoke", "--device", "cpu", "-o", str(out),
              "--param", "upstream=triplet-timm", "--param", "triplet-timm.backbone=test_efficientnet",
              pythonpath=[site], cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    cells = json.loads(out.read_text())["cells"]
    assert sorted((c["method"], str(c["canvas"]), c["role"], c["status"]) for c in cells) == [
        ("stroke-rule", "dynamic", "main", "ok"), ("triplet-timm", "32", "upstream", "ok"),
        ("triplet-timm", "64", "upstream", "ok")]
    (dyn,) = [c for c in cells if c["method"] == "stroke-rule"]
    hist = {int(k): v for k, v in dyn["canvas_histogram"].items()}
    assert sum(hist.values()) == dyn["num_queries"]
    # the rule costs nothing: the query's FLOPs are the upstream encoder's at the chosen canvases
    flops = {c["canvas"]: c["gflops"] for c in cells if c["method"] == "triplet-timm"}
    assert dyn["gflops"] == pytest.approx(sum(flops[c] * n for c, n in hist.items()) / dyn["num_queries"])


# -- the worked canvas selector ------------------------------------------------------------------
def test_the_worked_canvas_selector_is_complete_and_public():
    files = guide_files("A worked canvas selector")
    assert set(files) == {"pyproject.toml", "sketchbench_inkprofile/__init__.py", "sketchbench_inkprofile/selector.py"}
    for path, text in files.items():
        if path.endswith(".py"):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sketchbench"):
                    assert node.module == "sketchbench" and {a.name for a in node.names} <= set(sketchbench.__all__)


def test_the_worked_canvas_selector_installs_lists_and_routes(tmp_path):
    """Installed from the page alone: listed, used by SketchyNetV2 through --param encoder=, its
    FLOPs added per query, and exported with its recipe (the export self-checks it in onnxruntime)."""
    site = install_from_guide("A worked canvas selector", tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
        env.update({"PYTHONPATH": os.pathsep.join(map(str, [site, ROOT, ROOT / "plugins"])), "OMP_NUM_THREADS": "1",
                    "SKETCHBENCH_LOAD_PLUGINS": "inkprofile", "SKETCHBENCH_CACHE_DIR": str(tmp_path / "cache"),
                    "TQDM_DISABLE": "1"})
        return subprocess.run([sys.executable, "-c", "from sketchbench.cli.main import main; main()", *args],
                              env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)

    listed = run("list", "selectors", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    row = {r["name"]: r for r in json.loads(listed.stdout)}["ink-profile"]
    assert row["origin"] == "inkprofile"

    out = tmp_path / "r.json"
    done = run("run", "-m", "sketchynet-v2", "-d", "tiny", "-p", "smoke", "-o", str(out), "--param", "encoder=ink-profile",
               "--param", "hidden=8", "--param", "upstream=triplet-timm", "--param", "triplet-timm.backbone=test_efficientnet")
    assert done.returncode == 0, done.stderr[-3000:]
    (dyn,) = [c for c in json.loads(out.read_text())["cells"] if c["method"] == "sketchynet-v2"]
    assert dyn["status"] == "ok" and sum(dyn["canvas_histogram"].values()) == dyn["num_queries"]
    assert dyn["selector_gflops"] > 0  # the 64 -> 8 -> K layers, counted per query
    exported = run("export", str(out), "-o", str(tmp_path / "export"), "--method", "sketchynet-v2")
    assert exported.returncode == 0, exported.stderr[-3000:]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    selector = next(g for g in manifest["graphs"].values() if g["role"] == "selector")
    assert selector["encoder"] == "ink-profile" and selector["input"] == {"kind": "thumbnail", "size": 32}
