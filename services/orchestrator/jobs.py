"""Durable jobs: generations and session runs submitted to the queue, and what each kind of job does.

Submitting checks the request first (an unknown model or a session that cannot run fails now, with
its own error), then queues it in the store. A worker later runs it through the same router and
session code as a synchronous request, so a job behaves exactly like the call it stands for.
"""

from __future__ import annotations

import contextlib
import json
import logging

from google.protobuf import json_format
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.enums import JOB_KIND_NAMES
from services.common.errors import InvalidGenerationRequest, MeshError
from services.common.results import Generation, JobStatus, PipelineRunStatus, SessionRun
from services.orchestrator.batches import Batches
from services.orchestrator.errors import (
    InvalidJob,
)
from services.orchestrator.knowledge import KnowledgeBases
from services.orchestrator.pipelines import Pipelines
from services.orchestrator.queueing import job_view, request_fingerprint
from services.orchestrator.routing import Router, user_text
from services.orchestrator.sessions import SessionRuns
from services.orchestrator.webhooks import WebhookGuard, WebhookSender
from services.orchestrator.worker import JobOutcome, retryable
from services.store.client import StoreClient

log = logging.getLogger("llmmesh.orchestrator.jobs")


class Jobs:
    """Submits jobs and runs them, by kind."""

    def __init__(
        self,
        store: StoreClient,
        router: Router,
        sessions: SessionRuns,
        pipelines: Pipelines,
        webhooks: WebhookGuard,
        sender: WebhookSender,
    ) -> None:
        self._store = store
        self._router = router
        self._sessions = sessions
        self._pipelines = pipelines
        self._webhooks = webhooks
        self._sender = sender
        # Set once the knowledge bases exist (they queue their ingestion jobs here).
        self.knowledge: KnowledgeBases | None = None
        # Set once the batches exist (they run their lines here).
        self.batches: Batches | None = None

    async def submit_generation(
        self, spec: orchestrator_pb2.GenerationSpec, options: orchestrator_pb2.JobOptions
    ) -> tuple[orchestrator_pb2.Job, bool]:
        user_text(spec)  # a malformed conversation fails the submission, not the job
        if spec.conversation_id:
            raise InvalidGenerationRequest("a stored conversation cannot be continued by a background job")
        if spec.HasField("response"):
            raise InvalidGenerationRequest("a response of the Responses API cannot run as a background job")
        self._router.resolve(spec.model)  # an unknown model fails the submission, not the job
        request = {"spec": json_format.MessageToDict(spec, preserving_proto_field_name=True)}
        return await self._enqueue(common_pb2.JOB_KIND_GENERATE, request, options)

    async def submit_session_run(
        self,
        session_code: str,
        force_regenerate: bool,
        options: orchestrator_pb2.JobOptions,
        sampling: orchestrator_pb2.SamplingOverride | None = None,
    ) -> tuple[orchestrator_pb2.Job, bool]:
        await self._sessions.check(session_code)
        request: dict[str, object] = {"session_code": session_code, "force_regenerate": force_regenerate}
        if sampling is not None and sampling.ListFields():
            request["sampling"] = json_format.MessageToDict(sampling, preserving_proto_field_name=True)
        return await self._enqueue(common_pb2.JOB_KIND_SESSION, request, options)

    async def enqueue_work(
        self, kind: common_pb2.JobKind, request: dict[str, object], idempotency_key: str
    ) -> str:
        """Queue work the mesh gives itself (an ingestion); the same key queues it once."""
        job, _ = await self._enqueue(
            kind, request, orchestrator_pb2.JobOptions(idempotency_key=idempotency_key)
        )
        return job.id

    async def get(self, job_id: str) -> orchestrator_pb2.Job:
        """A job with its webhook's delivery, once that is queued, and an ingestion's progress."""
        job = (await self._store.get_job(store_pb2.GetJobRequest(job_id=job_id))).job
        view = await self._view(job)
        if job.kind == common_pb2.JOB_KIND_INGEST and self.knowledge is not None:
            progress = await self.knowledge.progress(json.loads(job.request_json))
            if progress is not None:
                view.progress.CopyFrom(progress)
        return view

    async def cancel(self, job_id: str) -> orchestrator_pb2.Job:
        return await self._view((await self._store.cancel_job(store_pb2.CancelJobRequest(job_id=job_id))).job)

    async def recent(self, request: orchestrator_pb2.ListJobsRequest) -> orchestrator_pb2.ListJobsResponse:
        """One page of the project's jobs, newest first; each with its webhook's delivery, as `get`."""
        page = await self._store.list_jobs(
            store_pb2.ListJobsRequest(
                limit=request.limit, after=request.after, kinds=request.kinds, statuses=request.statuses
            )
        )
        return orchestrator_pb2.ListJobsResponse(
            jobs=[await self._view(job) for job in page.jobs], has_more=page.has_more
        )

    async def _view(self, job: store_pb2.Job) -> orchestrator_pb2.Job:
        webhook = None
        if job.webhook_job_id:
            webhook = (await self._store.get_job(store_pb2.GetJobRequest(job_id=job.webhook_job_id))).job
        return job_view(job, webhook)

    async def _enqueue(
        self,
        kind: common_pb2.JobKind,
        request: dict[str, object],
        options: orchestrator_pb2.JobOptions,
    ) -> tuple[orchestrator_pb2.Job, bool]:
        if options.webhook_url:
            await self._webhooks.check(options.webhook_url)
        fingerprint = request_fingerprint(
            {
                "kind": JOB_KIND_NAMES[kind],
                "request": request,
                "webhook_url": options.webhook_url,
                "max": options.max_attempts,
            }
        )
        response = await self._store.enqueue_job(
            store_pb2.EnqueueJobRequest(
                job=store_pb2.NewJob(
                    kind=kind,
                    request_json=json.dumps(request),
                    max_attempts=options.max_attempts,
                    webhook_url=options.webhook_url,
                ),
                idempotency_key=options.idempotency_key,
                request_fingerprint=fingerprint,
            ),
        )
        log.info(
            "job queued",
            extra={"job_id": response.job.id, "kind": JOB_KIND_NAMES[kind], "new": response.created},
        )
        return job_view(response.job), response.created

    async def execute(self, job: store_pb2.Job) -> JobOutcome:
        """Run one claimed job; raises the MeshError that made it fail."""
        request = json.loads(job.request_json)
        if job.kind == common_pb2.JOB_KIND_GENERATE:
            spec = json_format.ParseDict(request["spec"], orchestrator_pb2.GenerationSpec())
            return JobOutcome(Generation.from_proto(await self._router.run(spec)).model_dump(mode="json"))
        if job.kind == common_pb2.JOB_KIND_SESSION:
            sampling = json_format.ParseDict(request.get("sampling", {}), orchestrator_pb2.SamplingOverride())
            run = await self._sessions.run(
                request["session_code"], bool(request.get("force_regenerate")), sampling=sampling
            )
            return JobOutcome(SessionRun.from_proto(run).model_dump(mode="json"))
        if job.kind == common_pb2.JOB_KIND_PIPELINE_STEP:
            return await self._pipelines.run_step(job)
        if job.kind == common_pb2.JOB_KIND_WEBHOOK:
            return await self._deliver(job.id, request)
        if job.kind == common_pb2.JOB_KIND_BATCH_LINE and self.batches is not None:
            return await self.batches.run_line(request)
        if job.kind == common_pb2.JOB_KIND_INGEST and self.knowledge is not None:
            try:
                return JobOutcome(await self.knowledge.ingest(request))
            except MeshError as error:
                if not retryable(error) or job.attempts >= job.max_attempts:
                    # The document says why, unless it is gone (its knowledge base deleted with force).
                    with contextlib.suppress(MeshError):
                        await self.knowledge.fail(request, error.code, error.message)
                raise
        raise InvalidJob(f"this orchestrator does not know jobs of kind {job.kind}")

    async def _deliver(self, delivery_id: str, request: dict[str, str]) -> JobOutcome:
        """POST the status of the job or pipeline run that ended to its webhook URL."""
        payload: dict[str, object]
        if "job_id" in request:
            target = (await self._store.get_job(store_pb2.GetJobRequest(job_id=request["job_id"]))).job
            # Without the webhook: this delivery is still running, its own state says nothing.
            status = JobStatus.from_proto(job_view(target)).model_dump(mode="json", exclude={"webhook"})
            payload = {"event": "job.finished", "job": status}
        else:
            run = await self._pipelines.get(request["pipeline_run_id"])
            payload = {
                "event": "pipeline_run.finished",
                "run": PipelineRunStatus.from_proto(run).model_dump(mode="json"),
            }
        status_code = await self._sender.post(request["url"], json.dumps(payload).encode(), delivery_id)
        return JobOutcome({"status_code": status_code})
