"""Stored conversations: read and delete what the mesh keeps for a caller."""
