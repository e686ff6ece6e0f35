"""What the server tells its operator: the per-request record, Prometheus metrics, the
request log, and log formatting."""
