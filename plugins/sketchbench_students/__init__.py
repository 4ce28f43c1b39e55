"""Built-in methods (filled in by their issue)."""
