"""Between OpenAI's Batch API and the orchestrator: a batch's input file read line by line, each line
translated by the code of the live route its url names, and the output and error files made of the
lines' stored results, rendered as those live routes render their answers.

The files are made when read, from the results the store keeps with each line's job, in input order:
every custom_id is in exactly one of them, exactly once, however often a line was attempted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, ValidationError

from services.common.errors import MeshError, NotFound, shown
from services.gateway.batches.protocol import InputLine
from services.gateway.errors import InvalidBatchFile, http_status, invalid_request, openai_error_body
from services.gateway.knowledge.protocol import FileObject
from services.gateway.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from services.gateway.openai.translation import (
    chat_completion,
    chat_spec,
    completion_spec,
    embedding_list,
    text_completion,
)
from services.gateway.responses.protocol import CreateResponseRequest
from services.gateway.responses.translation import Fresh, generation_spec
from services.store.client import StoreClient

# OpenAI's limit on the requests of one batch.
MAX_LINES = 50_000
# Problems named in one upload's error message (all of them go to a failed batch's errors).
SHOWN_PROBLEMS = 3
_BATCH_FILE = re.compile(r"file-(batch_[0-9a-f]{32})-(output|errors)")
_LINES_PAGE = 1000
_REQUESTS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/responses": CreateResponseRequest,
}


@dataclass(frozen=True)
class Problem:
    """Why a batch's input cannot run: the line (1-based; 0 for the whole file) and what is wrong."""

    code: str
    message: str
    line: int = 0
    param: str | None = None

    def to_proto(self) -> orchestrator_pb2.BatchProblem:
        return orchestrator_pb2.BatchProblem(
            code=self.code, message=self.message, line=self.line, param=self.param or ""
        )


def read_lines(content: bytes) -> tuple[list[tuple[int, InputLine]], list[Problem]]:
    """The requests of a batch input file with their line numbers, and every problem found: a line
    that is not JSON, not a request object (custom_id, method POST, a supported url, a body), or
    whose custom_id an earlier line has. Blank lines are skipped."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [Problem("invalid_file", "the file is not UTF-8 text")]
    lines: list[tuple[int, InputLine]] = []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            problems.append(Problem("invalid_json", f"line {number} is not valid JSON", number))
            continue
        try:
            line = InputLine.model_validate(data)
        except ValidationError as exc:
            message, _, param = invalid_request(exc.errors())
            problems.append(Problem("invalid_request", f"line {number}: {message}", number, param))
            continue
        if line.custom_id in first_seen:
            problems.append(
                Problem(
                    "duplicate_custom_id",
                    f"line {number}: custom_id {shown(line.custom_id)} is already the custom_id of line "
                    f"{first_seen[line.custom_id]}",
                    number,
                    "custom_id",
                )
            )
            continue
        first_seen[line.custom_id] = number
        lines.append((number, line))
    if not lines and not problems:
        problems.append(Problem("empty_file", "the file holds no requests"))
    if len(lines) > MAX_LINES:
        problems.append(Problem("too_many_requests", f"a batch holds at most {MAX_LINES} requests"))
    return lines, problems


def summary(problems: Sequence[Problem]) -> str:
    """The first problems in one message, with how many more there are."""
    shown_ones = "; ".join(p.message for p in problems[:SHOWN_PROBLEMS])
    more = len(problems) - SHOWN_PROBLEMS
    return shown_ones + (f" (and {more} more)" if more > 0 else "")


def check_upload(content: bytes) -> None:
    """An upload for purpose batch is read as a batch will read it; one with problems is refused
    (400) with a message that names the lines."""
    _, problems = read_lines(content)
    if problems:
        raise InvalidBatchFile(f"not a batch input file: {summary(problems)}")


def _refused(code: str, message: str, status: grpc.StatusCode) -> orchestrator_pb2.BatchLine:
    return orchestrator_pb2.BatchLine(
        error=common_pb2.JobError(code=code, message=message, status=status.name)
    )


def _translated(url: str, body: dict[str, Any]) -> orchestrator_pb2.BatchLine:
    """The line as its live route translates its body, with what rendering its answer needs."""
    try:
        request = _REQUESTS[url].model_validate(body)
    except ValidationError as exc:
        message, _, _ = invalid_request(exc.errors())
        return _refused("invalid_request", message, grpc.StatusCode.INVALID_ARGUMENT)
    if getattr(request, "stream", False):
        return _refused(
            "invalid_request", "stream is not supported in a batch", grpc.StatusCode.INVALID_ARGUMENT
        )
    try:
        if isinstance(request, ChatCompletionRequest):
            chat = {"logprobs": bool(request.logprobs), "grounded": bool(request.knowledge_bases)}
            return orchestrator_pb2.BatchLine(generation=chat_spec(request), door_json=json.dumps(chat))
        if isinstance(request, CompletionRequest):
            text = {"logprobs": request.logprobs is not None}
            return orchestrator_pb2.BatchLine(generation=completion_spec(request), door_json=json.dumps(text))
        if isinstance(request, EmbeddingRequest):
            embeddings = orchestrator_pb2.CreateEmbeddingsRequest(model=request.model, inputs=request.texts())
            door = {"encoding_format": request.encoding_format}
            return orchestrator_pb2.BatchLine(embeddings=embeddings, door_json=json.dumps(door))
        assert isinstance(request, CreateResponseRequest)
        return orchestrator_pb2.BatchLine(
            generation=generation_spec(request), door_json=json.dumps({"body": body})
        )
    except MeshError as error:
        return _refused(error.code, error.message, error.status)


def translate(
    endpoint: str, lines: Sequence[tuple[int, InputLine]]
) -> tuple[list[orchestrator_pb2.BatchLine], list[Problem]]:
    """Each line for the orchestrator (a body its route refuses becomes that line's error), and the
    problems that fail the batch whole: a line whose url is not the batch's endpoint."""
    translated: list[orchestrator_pb2.BatchLine] = []
    problems: list[Problem] = []
    for number, line in lines:
        if line.url != endpoint:
            problems.append(
                Problem(
                    "mismatched_endpoint",
                    f"line {number}: url {line.url} is not the batch's endpoint {endpoint}",
                    number,
                    "url",
                )
            )
            continue
        work = _translated(line.url, line.body)
        work.custom_id = line.custom_id
        translated.append(work)
    return translated, problems


def _body(
    endpoint: str, request: dict[str, Any], result: dict[str, Any], request_id: str, created: int
) -> Any:
    """The body the live route would have answered the line with."""
    door = request.get("door", {})
    if endpoint == "/v1/embeddings":
        answer = json_format.ParseDict(result["embeddings"], orchestrator_pb2.CreateEmbeddingsResponse())
        model = request["embeddings"].get("model", "")
        return embedding_list(answer, model, door.get("encoding_format", "float")).model_dump(mode="json")
    generated = json_format.ParseDict(result["generation"], common_pb2.GenerationResult())
    model = request["generation"].get("model", "")
    if endpoint == "/v1/chat/completions":
        completion = chat_completion(
            generated,
            model,
            f"chatcmpl-{request_id}",
            created,
            logprobs=bool(door.get("logprobs")),
            grounded=bool(door.get("grounded")),
        )
        return completion.model_dump(mode="json")
    if endpoint == "/v1/completions":
        text = text_completion(
            generated, model, f"cmpl-{request_id}", created, logprobs=bool(door.get("logprobs"))
        )
        return text.model_dump(mode="json")
    info = json_format.ParseDict(result["response"], orchestrator_pb2.ResponseInfo())
    return (
        Fresh(CreateResponseRequest.model_validate(door["body"]), info)
        .finished(generated)
        .model_dump(mode="json")
    )


def output_line(endpoint: str, job: store_pb2.Job) -> tuple[bool, dict[str, Any]]:
    """A line's entry in OpenAI's output JSONL, and whether it goes to the output file (else the error
    file): an answer (status 200), an error answer (the status the live route would have sent), or
    for a line that never ran (cancelled, expired) no response and the error."""
    request = json.loads(job.request_json)
    request_id = f"job-{job.id}"
    entry: dict[str, Any] = {"id": f"batch_req_{job.id}", "custom_id": request["custom_id"]}
    if job.status == common_pb2.JOB_STATUS_SUCCEEDED:
        body = _body(
            endpoint, request, json.loads(job.result_json), request_id, int(job.completed_at.seconds)
        )
        return True, {
            **entry,
            "response": {"status_code": 200, "request_id": request_id, "body": body},
            "error": None,
        }
    if job.status == common_pb2.JOB_STATUS_FAILED:
        status = grpc.StatusCode[job.error.status] if job.error.status else grpc.StatusCode.INTERNAL
        code = http_status(job.error.code, status)
        body = openai_error_body(code, job.error.code, job.error.message, request_id)
        return False, {
            **entry,
            "response": {"status_code": code, "request_id": request_id, "body": body},
            "error": None,
        }
    return False, {**entry, "response": None, "error": {"code": job.error.code, "message": job.error.message}}


async def batch_file(store: StoreClient, file_id: str) -> tuple[FileObject, bytes] | None:
    """The output or error file of an ended batch of the caller's project, made of its lines'
    results; None when file_id names no such file (the store's own files are looked up then)."""
    match = _BATCH_FILE.fullmatch(file_id)
    if match is None:
        return None
    batch_id, kind = match.groups()
    try:
        batch = (await store.get_batch(store_pb2.GetBatchRequest(batch_id=batch_id))).batch
    except NotFound:
        return None
    if file_id not in (batch.output_file_id, batch.error_file_id):
        return None
    wanted = kind == "output"
    entries: list[str] = []
    after = -1
    while True:
        page = await store.list_batch_lines(
            store_pb2.ListBatchLinesRequest(batch_id=batch_id, after_line=after, limit=_LINES_PAGE)
        )
        for job in page.lines:
            is_output, entry = output_line(batch.endpoint, job)
            if is_output == wanted:
                entries.append(json.dumps(entry, separators=(",", ":")))
        if not page.has_more or not page.lines:
            break
        after = page.lines[-1].batch_line
    content = "".join(f"{entry}\n" for entry in entries).encode()
    stored = FileObject(
        id=file_id,
        bytes=len(content),
        created_at=int(batch.finalizing_at.seconds),
        filename=f"{batch_id}_{kind}.jsonl",
        purpose="batch_output",
    )
    return stored, content
