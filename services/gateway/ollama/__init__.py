"""The Ollama API under /api/: chat, generate, embed and embeddings, tags, show, ps and version."""
