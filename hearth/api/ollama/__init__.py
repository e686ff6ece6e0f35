"""Ollama's native API: generation (chat, generate, embeddings) and model management."""
