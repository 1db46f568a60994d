"""Pipelines: the analytic and learned camera pipelines, pair synthesis, metrics, tiled inference, benchmark runs
(training, which uses them, is :mod:`cycleisp_fast.training`)."""
