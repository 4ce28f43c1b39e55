"""The data layer: sketches, rendering, vectorising, dataset records, safe loading, run data."""
