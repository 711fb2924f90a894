"""Inference domain errors."""

from services.common.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable


class ModelNotFound(NotFound):
    code = "model_not_found"


class PromptTooLong(InvalidArgument):
    code = "prompt_too_long"


class InvalidGenerationRequest(InvalidArgument):
    code = "invalid_generation_request"


class ModelBusy(ResourceExhausted):
    code = "model_busy"


class ModelNotLoaded(Unavailable):
    code = "model_not_loaded"
