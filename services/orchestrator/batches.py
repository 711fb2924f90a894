"""Batches of the Batch API: queued as one job per line, each line run as the live request it stands for.

The gateway reads the input file and translates every line with the same code its live OpenAI
routes use (a chat completion, a completion or an embedding request); this module checks each
translated line as a submitted job is checked (an unknown model, a malformed conversation), settles
the lines that cannot run as failed at once, and queues the rest in the store, where a batch line is
claimed only after every interactive job and within the worker's batch share. A worker runs a line
through Generations (routing, fallbacks, tools, structured output, cache: what RunGeneration runs)
or the embeddings path of CreateEmbeddings, and the result is kept with the line's job: the
gateway makes the output and error files of those results, in input order.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import InvalidArgument, InvalidGenerationRequest, MeshError, shown
from services.orchestrator.generations import Generations, embeddings
from services.orchestrator.routing import Router, user_text
from services.orchestrator.worker import JobOutcome
from services.store.client import StoreClient

# OpenAI's completion windows, and how long each lets a batch run.
WINDOWS = {"24h": 24 * 3600.0}


class InvalidCompletionWindow(InvalidArgument):
    code = "invalid_completion_window"


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _refused(error: MeshError) -> common_pb2.JobError:
    return common_pb2.JobError(code=error.code, message=error.message, status=error.status.name)


class Batches:
    """Queues batches (CreateBatch) and runs their lines (the worker's batch_line jobs)."""

    def __init__(self, store: StoreClient, router: Router, generations: Generations) -> None:
        self._store = store
        self._router = router
        self._generations = generations

    def _check(self, spec: orchestrator_pb2.GenerationSpec) -> None:
        """What a submitted generation job is checked for: a bad line fails now, alone. A response of
        the Responses API may be one (stored, or continuing a stored one, as live)."""
        user_text(spec)
        if spec.conversation_id:
            raise InvalidGenerationRequest("a stored conversation cannot be continued by a batch line")
        self._router.resolve(spec.model)

    def _line(self, line: orchestrator_pb2.BatchLine) -> store_pb2.NewBatchLine:
        request: dict[str, Any] = {"custom_id": line.custom_id, "door": json.loads(line.door_json or "{}")}
        work = line.WhichOneof("work")
        if work == "error":
            return store_pb2.NewBatchLine(request_json=json.dumps(request), error=line.error)
        if work == "generation":
            request["generation"] = _dict(line.generation)
            try:
                self._check(line.generation)
            except MeshError as error:
                return store_pb2.NewBatchLine(request_json=json.dumps(request), error=_refused(error))
        elif work == "embeddings":
            request["embeddings"] = _dict(line.embeddings)
        else:
            raise InvalidArgument(f"batch line {shown(line.custom_id)} asks for nothing")
        return store_pb2.NewBatchLine(request_json=json.dumps(request))

    async def create(self, request: orchestrator_pb2.CreateBatchRequest) -> str:
        """The new batch's id: in progress with its lines queued, or failed with its problems."""
        window_s = WINDOWS.get(request.completion_window)
        if window_s is None:
            raise InvalidCompletionWindow(
                f"completion_window must be one of {', '.join(WINDOWS)}, not {shown(request.completion_window)}"
            )
        new = store_pb2.CreateBatchRequest(
            endpoint=request.endpoint,
            input_file_id=request.input_file_id,
            completion_window=request.completion_window,
            metadata=request.metadata,
            window_s=window_s,
        )
        if request.problems:
            new.errors.extend(
                store_pb2.BatchError(code=p.code, message=p.message, line=p.line, param=p.param)
                for p in request.problems
            )
        else:
            new.lines.extend(self._line(line) for line in request.lines)
        return (await self._store.create_batch(new)).batch.id

    async def run_line(self, request: dict[str, Any]) -> JobOutcome:
        """Run one line as the live request would run; the result is what its output line is made of."""
        if "generation" in request:
            spec = json_format.ParseDict(request["generation"], orchestrator_pb2.GenerationSpec())
            answer = await self._generations.run(spec)
            outcome = {"generation": _dict(answer.result)}
            if answer.HasField("response"):
                outcome["response"] = _dict(answer.response)
            return JobOutcome(outcome)
        embedding = request["embeddings"]
        answer = await embeddings(self._router, embedding.get("model", ""), list(embedding.get("inputs", ())))
        return JobOutcome({"embeddings": _dict(answer)})
