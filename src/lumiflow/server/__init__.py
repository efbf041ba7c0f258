"""The server face: HTTP API (and, later, the dashboard) over the platform."""
