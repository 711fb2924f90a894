"""Orchestrator domain errors."""

import grpc

from services.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    UpstreamError,
)


class GenerationTimeout(DeadlineExceeded):
    code = "generation_timeout"


class VersionNotPublished(FailedPrecondition):
    code = "version_not_published"


class NoAnswers(FailedPrecondition):
    code = "no_answers"


class MissingSystemPrompt(FailedPrecondition):
    code = "missing_system_prompt"


class MissingLlmOptions(FailedPrecondition):
    code = "missing_llm_options"


class InvalidUserPromptTemplate(FailedPrecondition):
    code = "invalid_user_prompt_template"


class EmptyModelResponse(UpstreamError):
    code = "upstream_empty_response"


class InvalidModelOutput(UpstreamError):
    """A model's output that the request's constraint rejects (not JSON, or not valid against the schema)."""

    code = "upstream_invalid_output"


class NoTierAvailable(Unavailable):
    """Every tier of a route was unavailable or busy (our own pools, not a provider)."""

    code = "no_tier_available"


class AllTiersFailed(UpstreamError):
    """Every tier of a route failed, a model provider among them."""

    code = "upstream_all_tiers_failed"
    status = grpc.StatusCode.UNAVAILABLE


class InvalidJob(InvalidArgument):
    code = "invalid_job_request"


class UnknownPipeline(NotFound):
    code = "pipeline_not_found"


class InvalidPipelineInput(InvalidArgument):
    code = "invalid_pipeline_input"


class PipelineTemplateError(InvalidArgument):
    """A step's template cannot be rendered with the run's input and earlier outputs."""

    code = "pipeline_template_error"


class WebhookTargetRefused(InvalidArgument):
    """A webhook URL whose host does not resolve, or resolves to an address the mesh must not post to
    (loopback, private, link-local, ...); not retried."""

    code = "webhook_url_refused"


class WebhookFailed(Unavailable):
    """The webhook receiver was unreachable or answered with an error; the delivery is retried."""

    code = "webhook_delivery_failed"


class PreviousResponseNotFound(InvalidArgument):
    """previous_response_id names no stored response of the caller's project (OpenAI answers 400)."""

    code = "previous_response_not_found"


class PreviousResponseUnfinished(InvalidArgument):
    """previous_response_id names a response that failed, was cancelled or is still in progress."""

    code = "previous_response_unfinished"
