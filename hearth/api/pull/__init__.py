"""Pull API: POST /api/pull (NDJSON progress, Ollama-style)."""
