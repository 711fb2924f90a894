"""Plumbing shared by every LLM Mesh service: settings, logging, errors, gRPC bootstrap and lifecycle."""
