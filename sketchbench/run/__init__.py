"""Running grids: the plan, identities, models and loop of a run; presets, benchmarks."""
