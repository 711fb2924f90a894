"""Realtime chat over a WebSocket."""
