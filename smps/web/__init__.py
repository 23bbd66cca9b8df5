"""HTTP: /health, /metrics, later the admin UI and REST API."""
