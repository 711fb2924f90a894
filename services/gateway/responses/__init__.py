"""The OpenAI Responses API under /v1/responses: create (streamed or not), retrieve, delete, input items."""
