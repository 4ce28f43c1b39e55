"""Running grids: the runner, presets, benchmarks."""
