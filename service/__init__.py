"""Configuration, model registry, worker and command line."""
