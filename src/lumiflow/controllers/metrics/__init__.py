"""Metrics of training jobs, collected by the platform itself (Katib's collectors, no sidecar)."""
