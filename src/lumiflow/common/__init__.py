"""Shared foundations: errors, settings, quantities, manifest parsing, time helpers."""
