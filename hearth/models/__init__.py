"""Model files: the registry over the models directory, packaged models, loading."""
