"""POST /api/v1/ai/generate: one generation, whole or streamed as Server-Sent Events."""
