"""completions API."""
