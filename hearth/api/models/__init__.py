"""models API."""
