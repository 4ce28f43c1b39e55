"""An example third-party sketchbench plugin: the method ``example-pixels`` and the dataset
``example-dots``.

This module is what the ``sketchbench`` entry point names, so it is imported every time the
command line starts: keep it free of heavy imports. Both targets are registered as lazy
``"module:Class"`` strings. The method's metadata (kind, description, ...) is declared once, on its
class: ``sketchbench list methods`` imports the class to show it. (A plugin with many heavy methods
may repeat ``kind=``/``description=`` here to keep listing import-free; sketchbench then checks them
against the class when it loads.)
"""

from sketchbench import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_methods(register):
    register("example-pixels", "sketchbench_example_plugin.method:ExamplePixels", aliases=("example-cnn",))


@hookimpl
def register_datasets(register):
    register(
        "example-dots",
        "sketchbench_example_plugin.dataset:ExampleDots",
        modality="vector",
        description="example plugin: generated dot patterns; each sketch circles its photo's dots (no files)",
    )
