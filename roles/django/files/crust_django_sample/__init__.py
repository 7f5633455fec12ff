"""Crust's sample Django project: a page, the admin, and notes in PostgreSQL (an ORM model)."""
