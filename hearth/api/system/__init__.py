"""system API."""
