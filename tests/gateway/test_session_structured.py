"""Session runs with structured output: a template version's llm_options.json_schema becomes the run's
output constraint, the result is checked (retried once), stored and returned parsed as json_result,
JSON, streamed and as a job; a schema that is not one is refused when the version is written. On the
scripted model (which takes a constraint and can be made to break it) and on the real local model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.fakes import JsonScriptedBackend
from tests.support.http import assert_error, sse_events
from tests.support.mesh import GEMMA, Gateway, gemma_mesh, scripted_mesh
from tests.support.sessions import ANSWERS, LLM_OPTIONS, RENDERED, make_session, make_version

ECHO = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}


@pytest.fixture
async def mesh(database_url: str) -> AsyncIterator[Gateway]:
    async with scripted_mesh(database_url, backends=[JsonScriptedBackend()]) as gateway:
        yield gateway


async def run(mesh: Gateway, code: str, **body: Any) -> Any:
    return await mesh.client.post(f"/api/v1/sessions/{code}/llm", json=body or None)


async def structured_session(mesh: Gateway, schema: dict[str, Any] = ECHO, answers: Any = ANSWERS) -> str:
    await make_version(mesh, llm_options={**LLM_OPTIONS, "json_schema": schema})
    return await make_session(mesh, answers)


async def test_a_run_returns_and_stores_its_result_as_json(mesh: Gateway) -> None:
    code = await structured_session(mesh)
    response = await run(mesh, code)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["json_result"] == {"echo": RENDERED}
    assert json.loads(body["llm_result"]) == body["json_result"]  # the text stays the model's
    (call,) = mesh.backend.calls
    assert call.request.constraint is not None
    assert (call.request.constraint.kind, call.request.constraint.json_schema) == ("json_schema", ECHO)
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"]
    assert stored["json_result"] == body["json_result"] and stored["llm_result"] == body["llm_result"]
    again = (await run(mesh, code)).json()
    assert again == {**body, "cached": True}
    assert len(mesh.backend.calls) == 1


async def test_the_schema_is_part_of_the_version_and_of_the_inputs(mesh: Gateway) -> None:
    code = await structured_session(mesh)
    version = (await mesh.client.get("/api/v1/templates/triage/versions/1")).json()
    assert version["llm_options"]["json_schema"] == ECHO
    plain = await make_version(mesh)  # version 2: the same, without a schema
    assert plain["llm_options"]["json_schema"] is None
    plain_code = await make_session(mesh, ANSWERS, version=2)
    body = (await run(mesh, plain_code)).json()
    assert body["llm_result"] == f"echo: {RENDERED}" and body["json_result"] is None
    assert mesh.backend.calls[-1].request.constraint is None
    assert (await run(mesh, code)).json()["json_result"] == {"echo": RENDERED}


async def test_streamed_and_queued_runs_carry_the_json_too(mesh: Gateway) -> None:
    code = await structured_session(mesh)
    events = sse_events((await run(mesh, code, stream=True)).text)
    deltas = "".join(data["text"] for kind, data in events if kind == "delta")
    kind, done = events[-1]
    assert kind == "done" and done["json_result"] == {"echo": RENDERED} and deltas == done["llm_result"]
    queued = await run(mesh, code, force_regenerate=True, **{"async": True})
    assert queued.status_code == 202, queued.text
    status: dict[str, Any] = {}
    for _ in range(200):  # bounded: the scripted model answers at once
        status = (await mesh.client.get(queued.json()["status_url"])).json()
        if status["status"] in ("SUCCEEDED", "FAILED"):
            break
        await asyncio.sleep(0.02)
    assert status["status"] == "SUCCEEDED", status
    assert status["result"]["json_result"] == {"echo": RENDERED} and status["result"]["cached"] is False


async def test_output_that_breaks_the_schema_is_retried_once_then_an_error(mesh: Gateway) -> None:
    once = await structured_session(mesh, answers=[{"option": "note", "value": "BAD-JSON-ONCE"}])
    body = (await run(mesh, once)).json()
    assert json.loads(body["llm_result"]) == body["json_result"] and len(mesh.backend.calls) == 2
    never = await make_session(mesh, [{"option": "note", "value": "BAD-JSON"}])
    error = assert_error(await run(mesh, never), 502, "upstream_invalid_output")
    assert "not JSON" in error["message"] and "twice" in error["message"]
    assert (await mesh.client.get(f"/api/v1/sessions/{never}")).json()["latest_result"] is None
    # JSON that does not validate is the same error, naming where it breaks the schema.
    await make_version(mesh, llm_options={**LLM_OPTIONS, "json_schema": {**ECHO, "required": ["summary"]}})
    wrong = await make_session(mesh, ANSWERS, version=2)
    error = assert_error(await run(mesh, wrong), 502, "upstream_invalid_output")
    assert "'summary' is a required property" in error["message"]


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "objekt"}, "the JSON schema is invalid at type"),
        ({"properties": {"a": {"minLength": -1}}}, "the JSON schema is invalid at properties/a/minLength"),
        (["not", "an", "object"], "should be an object"),
    ],
)
async def test_a_schema_that_is_not_one_is_refused_naming_the_field(
    mesh: Gateway, schema: Any, words: str
) -> None:
    assert (await mesh.client.post("/api/v1/templates", json={"name": "triage"})).status_code == 201
    body = {"system_prompt": "x", "llm_options": {**LLM_OPTIONS, "json_schema": schema}}
    for response in (
        await mesh.client.post("/api/v1/templates/triage/versions", json=body),
        await mesh.client.put("/api/v1/templates/triage/versions/1", json=body),
    ):
        error = assert_error(response, 422, "invalid_request")
        assert "llm_options.json_schema" in error["message"] and words in error["message"], error
    assert (await mesh.client.get("/api/v1/templates/triage")).json()["versions"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_run_on_the_real_local_model_validates_against_its_schema(
    database_url: str, model_path: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "urgency": {"enum": ["low", "medium", "high"]},
            "summary": {"type": "string", "maxLength": 60},
        },
        "required": ["urgency", "summary"],
        "additionalProperties": False,
    }
    async with gemma_mesh(database_url, model_path) as gateway:
        await make_version(
            gateway, llm_options={"model": GEMMA, "max_tokens": 80, "temperature": 0, "json_schema": schema}
        )
        code = await make_session(gateway, ANSWERS)
        response = await run(gateway, code)
        assert response.status_code == 200, response.text
        body = response.json()
        jsonschema.validate(body["json_result"], schema)
        assert json.loads(body["llm_result"]) == body["json_result"] and body["model"] == GEMMA
