"""Tooling for development, demos and tests (a local PostgreSQL); the pipeline itself never imports it."""
