"""The sketchbench command line: ``sketchbench.cli:main`` is the console script."""

from sketchbench.cli.main import cli, main

__all__ = ["cli", "main"]
