"""Measuring a trained method: retrieval metrics, FLOPs, latency, evaluation."""
