"""Inference domain errors, provider errors among them, each classified once by its status.

The status says what the orchestrator may do: UNAVAILABLE (and an upstream DEADLINE_EXCEEDED) is
transient, so it retries and then falls back to the next tier; RESOURCE_EXHAUSTED falls back at once;
anything else is permanent and reaches the client as is.
"""

import grpc

from services.common.errors import (
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    UpstreamError,
)


class PromptTooLong(InvalidArgument):
    code = "prompt_too_long"


class UnsupportedOutputControl(InvalidArgument):
    """A constraint or logprobs asked of a backend that cannot honour them."""

    code = "unsupported_output_control"


class InvalidConstraint(InvalidArgument):
    """A JSON schema or grammar that is not one, or that the engine cannot enforce."""

    code = "invalid_constraint"


class ModelBusy(ResourceExhausted):
    code = "model_busy"


class ModelNotLoaded(Unavailable):
    code = "model_not_loaded"


class ModelLoadFailed(Unavailable):
    """A model could not be loaded (a missing or broken file, out of memory); the log has why."""

    code = "model_load_failed"


class NoModelSlot(ResourceExhausted):
    """Every slot for a loaded model is taken by a model that is generating."""

    code = "model_slots_busy"


# The provider answered, or failed to, in a way that may pass: retried, then the next tier.


class ProviderThrottled(Unavailable):
    code = "upstream_throttled"


class ProviderUnavailable(Unavailable):
    code = "upstream_unavailable"


class ProviderTimeout(UpstreamError):
    code = "upstream_timeout"
    status = grpc.StatusCode.DEADLINE_EXCEEDED


# Permanent: retrying or another tier would not help the same request.


class ProviderAuthFailed(UpstreamError):
    code = "upstream_auth_failed"


class ProviderRejected(UpstreamError):
    """The provider refused the request as invalid (a parameter it does not take, a model it lacks)."""

    code = "upstream_bad_request"


class ContentFiltered(InvalidArgument):
    code = "content_filtered"
