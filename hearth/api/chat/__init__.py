"""chat API."""
