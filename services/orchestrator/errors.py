"""Orchestrator domain errors."""

from services.common.errors import DeadlineExceeded, InvalidArgument


class InvalidGeneration(InvalidArgument):
    code = "invalid_generation_request"


class GenerationTimeout(DeadlineExceeded):
    code = "generation_timeout"
