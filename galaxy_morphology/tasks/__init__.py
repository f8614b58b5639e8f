"""Prefect tasks: each a small typed step of the pipeline."""
