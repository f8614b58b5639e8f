"""Prefect flows: wiring of the tasks, nothing else."""
