"""tq gateway: the HTTP API (Falcon on gunicorn)."""
