"""Measuring the server: the probe's requests, their samples, the resource monitor, and the
interleaved baseline/condition pairs (``compare``) that turn them into comparisons."""
