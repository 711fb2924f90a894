"""Pipelines: named, ordered steps from the registry, each a prompt template run on a route.

A run's steps are jobs. The first is queued with the run; when a step's job completes, the store
queues the next in the same transaction that records the result, so a run never stops between
steps nor runs a step twice. A step's template sees the run's `input` and `steps`, the outputs of
the steps before it by name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import TemplateError
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import shown
from services.common.prompts import compiled
from services.common.registry import Pipeline, PipelineStep, Registry
from services.common.results import Generation
from services.orchestrator.errors import InvalidPipelineInput, PipelineTemplateError, UnknownPipeline
from services.orchestrator.queueing import request_fingerprint, run_view
from services.orchestrator.routing import Router
from services.orchestrator.webhooks import WebhookGuard
from services.orchestrator.worker import JobOutcome
from services.store.client import StoreClient


def render_step(step: PipelineStep, run_input: dict[str, Any], outputs: dict[str, str]) -> tuple[str, str]:
    """The step's (system, prompt), rendered from the run's input and the earlier steps' outputs."""
    # Besides Jinja's own errors, an expression fails with Python's on input it cannot handle
    # ("{{ input.a + input.b }}" on text and a number): the step's fault, never an internal error.
    try:
        system = compiled(step.system).render(input=run_input, steps=outputs) if step.system else ""
        prompt = compiled(step.prompt).render(input=run_input, steps=outputs)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise PipelineTemplateError(f"step {step.name!r} cannot be rendered: {exc}") from exc
    if not prompt.strip():
        raise PipelineTemplateError(f"step {step.name!r} rendered an empty prompt")
    return system, prompt


def run_input_of(input_json: str) -> dict[str, Any]:
    """The run's input as its templates see it: a JSON object (empty text is an empty object)."""
    try:
        run_input = json.loads(input_json) if input_json else {}
    except ValueError:
        run_input = None
    if not isinstance(run_input, dict):
        raise InvalidPipelineInput("a pipeline's input must be a JSON object")
    return run_input


def step_spec(
    pipeline: Pipeline, run: store_pb2.PipelineRun, step_index: int
) -> orchestrator_pb2.GenerationSpec:
    """The generation of step `step_index`, rendered from the run's input and the outputs of the
    earlier steps that succeeded (by step name)."""
    outputs = {
        pipeline.steps[done.step_index].name: json.loads(done.result_json)["text"]
        for done in run.steps
        if done.step_index < step_index and done.status == common_pb2.JOB_STATUS_SUCCEEDED
    }
    step = pipeline.steps[step_index]
    system, prompt = render_step(step, json.loads(run.input_json or "{}"), outputs)
    spec = orchestrator_pb2.GenerationSpec(
        model=step.model or "",
        system=system,
        prompt=prompt,
        params=common_pb2.SamplingParams(max_tokens=step.max_tokens or 0, temperature=step.temperature),
    )
    if step.knowledge_bases:
        spec.knowledge.knowledge_base_ids.extend(step.knowledge_bases)
    return spec


class Pipelines:
    """Starts, reports on, resumes and cancels pipeline runs, and runs their steps as jobs."""

    def __init__(
        self, store: StoreClient, router: Router, registry: Registry, stall_s: float, webhooks: WebhookGuard
    ) -> None:
        self._webhooks = webhooks
        self._store = store
        self._router = router
        self._pipelines = registry.pipelines
        self._stall_s = stall_s

    def describe(self) -> orchestrator_pb2.ListPipelinesResponse:
        return orchestrator_pb2.ListPipelinesResponse(
            pipelines=[
                orchestrator_pb2.Pipeline(
                    name=name,
                    steps=[orchestrator_pb2.PipelineStep(name=s.name, model=s.model or "") for s in p.steps],
                )
                for name, p in self._pipelines.items()
            ]
        )

    def _pipeline(self, name: str) -> Pipeline:
        pipeline = self._pipelines.get(name)
        if pipeline is None:
            known = ", ".join(sorted(self._pipelines)) or "none configured"
            raise UnknownPipeline(f"no pipeline is named {shown(name)}; known: {known}")
        return pipeline

    def view(self, run: store_pb2.PipelineRun) -> orchestrator_pb2.PipelineRun:
        """The run as clients see it: its pipeline's step names, its steps' jobs, whether it stalled."""
        pipeline = self._pipelines.get(run.pipeline)
        names = (
            [step.name for step in pipeline.steps]
            if pipeline
            else [f"step {i}" for i in range(len(run.steps))]
        )
        idle_s = (datetime.now(UTC) - run.updated_at.ToDatetime(tzinfo=UTC)).total_seconds()
        stalled = run.status == common_pb2.PIPELINE_RUN_STATUS_RUNNING and idle_s > self._stall_s
        return run_view(run, names, stalled)

    async def start(
        self, name: str, input_json: str, options: orchestrator_pb2.JobOptions
    ) -> tuple[orchestrator_pb2.PipelineRun, bool]:
        pipeline = self._pipeline(name)
        run_input = run_input_of(input_json)
        if options.webhook_url:
            await self._webhooks.check(options.webhook_url)
        render_step(pipeline.steps[0], run_input, {})  # a missing input variable fails now, not later
        first = store_pb2.NewJob(
            kind=common_pb2.JOB_KIND_PIPELINE_STEP, request_json="{}", max_attempts=options.max_attempts
        )
        fingerprint = request_fingerprint(
            {
                "pipeline": name,
                "input": run_input,
                "webhook_url": options.webhook_url,
                "max": options.max_attempts,
            }
        )
        response = await self._store.create_pipeline_run(
            store_pb2.CreatePipelineRunRequest(
                pipeline=name,
                input_json=json.dumps(run_input),
                first_step=first,
                idempotency_key=options.idempotency_key,
                request_fingerprint=fingerprint,
                webhook_url=options.webhook_url,
            ),
        )
        return self.view(response.run), response.created

    async def get(self, run_id: str) -> orchestrator_pb2.PipelineRun:
        response = await self._store.get_pipeline_run(store_pb2.GetPipelineRunRequest(run_id=run_id))
        return self.view(response.run)

    async def recent(
        self, request: orchestrator_pb2.ListPipelineRunsRequest
    ) -> orchestrator_pb2.ListPipelineRunsResponse:
        """One page of the project's runs, newest first, each as `get` shows it."""
        page = await self._store.list_pipeline_runs(
            store_pb2.ListPipelineRunsRequest(
                limit=request.limit, after=request.after, statuses=request.statuses
            )
        )
        return orchestrator_pb2.ListPipelineRunsResponse(
            runs=[self.view(run) for run in page.runs], has_more=page.has_more
        )

    async def resume(self, run_id: str) -> orchestrator_pb2.PipelineRun:
        response = await self._store.resume_pipeline_run(
            store_pb2.ResumePipelineRunRequest(run_id=run_id),
        )
        return self.view(response.run)

    async def cancel(self, run_id: str) -> orchestrator_pb2.PipelineRun:
        response = await self._store.cancel_pipeline_run(
            store_pb2.CancelPipelineRunRequest(run_id=run_id),
        )
        return self.view(response.run)

    async def run_step(self, job: store_pb2.Job) -> JobOutcome:
        """Render the job's step from the run so far, generate, and name the step that follows."""
        run = (
            await self._store.get_pipeline_run(
                store_pb2.GetPipelineRunRequest(run_id=job.pipeline_run_id),
            )
        ).run
        pipeline = self._pipeline(run.pipeline)
        if job.step_index >= len(pipeline.steps):
            raise PipelineTemplateError(f"pipeline {run.pipeline!r} has no step {job.step_index} any more")
        result = await self._router.run(step_spec(pipeline, run, job.step_index))
        last = job.step_index + 1 >= len(pipeline.steps)
        next_step = (
            None
            if last
            else store_pb2.NewJob(
                kind=common_pb2.JOB_KIND_PIPELINE_STEP, request_json="{}", max_attempts=job.max_attempts
            )
        )
        return JobOutcome(Generation.from_proto(result).model_dump(mode="json"), next_step)
