"""The OpenAI-compatible API: chat completions, completions, embeddings and models under /v1."""
