"""An example third-party sketchbench plugin: the method ``example-pixels`` and the dataset
``example-dots``.

This module is what the ``sketchbench`` entry point names, so it is imported every time the
command line starts: keep it free of heavy imports. Both targets are registered as lazy
``"module:Class"`` strings, so ``sketchbench list methods`` shows them (with the metadata passed
here) without importing torch code from this package.
"""

from sketchbench import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_methods(register):
    register(
        "example-pixels",
        "sketchbench_example_plugin.method:ExamplePixels",
        aliases=("example-cnn",),
        kind="baseline",
        description="example plugin: a 4-layer CNN shared by sketches and photos, triplet loss",
    )


@hookimpl
def register_datasets(register):
    register(
        "example-dots",
        "sketchbench_example_plugin.dataset:ExampleDots",
        modality="vector",
        description="example plugin: generated dot patterns; each sketch circles its photo's dots (no files)",
    )
