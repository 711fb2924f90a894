"""The Anthropic Messages API: POST /v1/messages (streamed or not) and /v1/messages/count_tokens."""
