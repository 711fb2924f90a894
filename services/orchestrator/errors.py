"""Orchestrator domain errors."""

from services.common.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, UpstreamError


class InvalidGeneration(InvalidArgument):
    code = "invalid_generation_request"


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
