"""Built-in datasets, registered exactly as a third-party plugin would register them.

Targets are lazy ``"module:Class"`` strings, so ``sketchbench list datasets`` imports nothing.
"""

from sketchbench import hookimpl

_V = "vector"
_R = "raster"


@hookimpl
def register_datasets(register):
    register("tiny", "sketchbench_datasets.tiny:TinyDataset", modality=_V,
             description="a few generated pairs for tests (no files)")
