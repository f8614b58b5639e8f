"""The edges: tables on disk, SkyServer, MLflow tracking and the model registry."""
