"""Observability helpers: drift scores, JSON request logs, metric names and recorders.

Light on purpose (numpy and the standard library only): the Python-backend steps import these
modules inside Triton, and the client imports `ClientMetrics` (prometheus-client is imported
only when one is created).
"""
