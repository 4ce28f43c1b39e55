"""The method layer: the Method interface, declared parameters, training helpers, distributed training, weight sources."""
