"""The ``sketchbench`` command group: one line on stderr and an exit code for every expected error.

The commands live in their own modules (``run``, ``inspect``, ``results``, ...), each listing its
``COMMANDS``; this module adds them to :data:`cli` itself (as tox registers its built-in commands),
so that no command module imports the group back.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.cli import demo, export, inspect, results, retrieve, run, weights
from sketchbench.cli.options import FLAGS


class SketchbenchGroup(click.Group):
    """Turns expected errors into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SketchbenchError as exc:
            click.echo(f"error: {exc.spelled(FLAGS)}", err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("interrupted: finished cells are saved in the results file; run again to resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # the last guard: never a traceback without --debug
            if os.environ.get("SKETCHBENCH_DEBUG"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc} (set SKETCHBENCH_DEBUG=1 for the traceback)", err=True)
            sys.exit(int(ExitCode.FAILED))


@click.group(cls=SketchbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sketchbench")
@click.option("-v", "--verbose", is_flag=True, help="Log what is trained, cached and reused.")
def cli(verbose: bool) -> None:
    """sketchbench: efficient fine-grained sketch-based image retrieval, benchmarked.

    \b
    Examples:
      sketchbench run --method sketchynet-v2 --dataset synthetic
      sketchbench list methods
      sketchbench report results/run-*.json
      sketchbench flops --backbone vgg16 --canvas 256
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)


for _module in (run, inspect, results, weights, export, retrieve, demo):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    from sketchbench.cli.options import plugin_host as _host

    host = None
    try:
        host = _host()
        host.add_commands(cli)
    except SketchbenchError as exc:
        click.echo(f"error: {exc.spelled(FLAGS)}", err=True)
        sys.exit(int(exc.exit_code))
    del host
    cli(prog_name="sketchbench")
