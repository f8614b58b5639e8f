"""Serving the registered model through MLflow's scoring server."""
