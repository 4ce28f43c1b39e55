"""Cross-cutting infrastructure: errors, progress bars, the artifact store, file helpers."""
