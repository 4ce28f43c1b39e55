"""``python -m sketchbench.cli``: the command line (torchrun runs it this way)."""

from sketchbench.cli.main import main

main()
