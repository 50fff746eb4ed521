"""Side channels to the monitoring stack operators already run (Prometheus, Grafana)."""
