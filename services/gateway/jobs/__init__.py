"""Durable jobs and pipeline runs over REST."""
