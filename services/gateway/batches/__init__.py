"""OpenAI's Batch API: /v1/batches over the durable job queue."""
