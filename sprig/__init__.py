"""Sprig: a self-hosted course shop on Bottle, Huey, Peewee, Redis, Waitress and Jinja2.

The package holds everything but the design card's three top-level modules (app.py, tasks.py,
models.py); docs/architecture.md draws its sub-packages and the direction of their imports.
"""
