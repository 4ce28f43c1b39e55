"""sketchbench's version (``pyproject.toml`` says the same): defined down here so that every layer
can record it (results files, export manifests, plugin listings) without importing the package's
public surface, which sits on top of everything."""

__version__ = "0.1.0"
