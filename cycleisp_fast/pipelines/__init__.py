"""Pipelines: the analytic and learned camera pipelines, pair synthesis, metrics, tiled inference, training."""
