"""Model lifecycle API: /api/ps, /api/load, /api/unload, /api/delete (Ollama-style)."""
