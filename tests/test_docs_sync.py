"""docs/cli.md is generated from the commands' --help and must not go stale; every command's help
shows examples."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen():
    """scripts/gen_cli_docs.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def group(gen) -> click.Group:
    return gen.documented_group()


def test_cli_docs_are_up_to_date(gen, group):
    current = (ROOT / "docs" / "cli.md").read_text() if (ROOT / "docs" / "cli.md").is_file() else ""
    assert gen.generate(group) == current, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


def test_every_command_help_has_examples(gen, group):
    missing = [" ".join(path) for path, _ in gen.walk(group) if "Examples:" not in gen.help_text(group, path)]
    assert not missing, f"these commands have no 'Examples:' section in --help: {missing}"


def test_every_command_is_documented(gen, group):
    """The walk reaches every command, sub-groups included (e.g. ``data info``)."""
    paths = {" ".join(path) for path, _ in gen.walk(group)}
    assert {"sketchbench", "sketchbench run", "sketchbench list", "sketchbench data", "sketchbench data info"} <= paths
    top = {f"sketchbench {name}" for name, cmd in group.commands.items() if not cmd.hidden}
    assert top <= paths


def test_new_commands_and_subgroups_are_picked_up(gen, group):
    extended = copy.copy(group)
    extended.commands = dict(group.commands)

    @extended.group(name="zz-tools")
    def tools():
        """Tools added later.

        \b
        Examples:
          sketchbench zz-tools zz-sub
        """

    @tools.command(name="zz-sub")
    @click.option("--level", type=int, default=3, show_default=True, help="How deep.")
    def sub(level):
        """A sub-command added later."""

    text = gen.generate(extended)
    assert "## sketchbench zz-tools zz-sub\n" in text and "- [`sketchbench zz-tools zz-sub`]" in text
    assert "--level INTEGER  How deep.  [default: 3]" in text
    assert "zz-tools" not in gen.generate(group)  # the copy did not leak into the real group


def test_generated_help_is_what_the_command_prints(gen, group):
    from sketchbench.testing import run_cli

    code, out, _ = run_cli("data", "info", "--help")
    assert code == 0
    # the same text, up to the terminal width click picked for this process
    assert gen.help_text(group, ("sketchbench", "data", "info")).split() == out.split()


def test_check_mode_reports_a_stale_file(gen, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "OUT", tmp_path / "cli.md")
    monkeypatch.setattr(gen, "generate", lambda group=None: "# fresh\n")
    assert gen.main(["--check"]) == 1  # missing
    assert capsys.readouterr().err.strip() == "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    assert gen.main([]) == 0 and (tmp_path / "cli.md").read_text() == "# fresh\n"
    assert gen.main(["--check"]) == 0
