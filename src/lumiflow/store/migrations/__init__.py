"""Alembic migrations, shipped inside the package (``lumi db upgrade`` applies them)."""
