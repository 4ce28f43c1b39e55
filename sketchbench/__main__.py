"""``python -m sketchbench``: the command line."""

from sketchbench.cli.main import main

main()
