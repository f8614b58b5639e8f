"""Docker test infrastructure: stand-in base images and the engine helpers."""
