"""API keys, the admin API that manages them, and the limits each request is admitted under."""
