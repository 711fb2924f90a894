"""Store domain errors."""

import grpc

from services.common.errors import FailedPrecondition, InvalidArgument, MeshError, NotFound, Unavailable


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class TemplateNotFound(NotFound):
    code = "template_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class AlreadyExists(MeshError):
    code = "already_exists"
    status = grpc.StatusCode.ALREADY_EXISTS


class TemplateExists(AlreadyExists):
    code = "template_exists"


class SessionExists(AlreadyExists):
    code = "session_exists"


class InvalidStatusTransition(FailedPrecondition):
    code = "invalid_status_transition"


class VersionNotDraft(FailedPrecondition):
    code = "version_not_draft"


class NoPublishedVersion(FailedPrecondition):
    code = "no_published_version"


class InvalidStoreRequest(InvalidArgument):
    code = "invalid_store_request"


class UnknownOption(InvalidArgument):
    code = "unknown_option"


class JobNotFound(NotFound):
    code = "job_not_found"


class PipelineRunNotFound(NotFound):
    code = "pipeline_run_not_found"


class JobFinished(FailedPrecondition):
    code = "job_already_finished"


class PipelineRunNotResumable(FailedPrecondition):
    code = "pipeline_run_not_resumable"


class IdempotencyKeyReused(FailedPrecondition):
    """An idempotency key sent again with a different request."""

    code = "idempotency_key_reused"


class PipelineRunFinished(FailedPrecondition):
    code = "pipeline_run_already_finished"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class ProjectExists(AlreadyExists):
    code = "project_exists"


class ResponseNotFound(NotFound):
    code = "response_not_found"


class ResponseItemNotFound(InvalidArgument):
    """A page asked to start after an item the response does not have."""

    code = "input_item_not_found"


class ResponseNotInProgress(FailedPrecondition):
    code = "response_not_in_progress"


class BatchNotFound(NotFound):
    code = "batch_not_found"


class BatchFinished(FailedPrecondition):
    code = "batch_already_finished"
