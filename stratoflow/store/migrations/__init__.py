"""Alembic environment and revisions of the Stratoflow store (a package so it ships in wheels)."""
