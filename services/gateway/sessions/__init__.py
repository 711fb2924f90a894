"""Prompt templates, their versions, sessions, answers, and the session run (POST /sessions/{code}/llm)."""
