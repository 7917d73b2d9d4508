"""What operators see of a running server: the metrics it counts, their Prometheus exposition,
the plain HTTP paths that serve them and the health check, and the event-loop lag watcher."""
