"""Session runs and their data, over real HTTP and gRPC, on SQLite and PostgreSQL.

The model is the recording scripted backend (tests/support/fakes.py), so every test can check exactly which
messages reached the model and what the store kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from llmmesh.store.v1 import store_pb2
from pydantic import ValidationError
from websockets.asyncio.client import connect

from services.gateway.config import GatewaySettings
from services.store.client import StoreClient
from services.store.db import create_engine
from services.store.migrate import upgrade_to_head
from services.store.tables import managed_by_orm, metadata
from tests.support.auth import ADMIN_TOKEN, create_key
from tests.support.http import assert_error, sse_events
from tests.support.mesh import Gateway, scripted_mesh
from tests.support.sessions import ANSWERS, OPTIONS, RENDERED, SYSTEM, make_session, make_version


@pytest.fixture
async def mesh(database_url: str) -> AsyncIterator[Gateway]:
    async with scripted_mesh(database_url) as gateway:
        yield gateway


async def run(mesh: Gateway, code: str, **body: Any) -> Any:
    return await mesh.client.post(f"/api/v1/sessions/{code}/llm", json=body or None)


async def test_run_renders_the_version_and_stores_the_result(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    response = await run(mesh, code)
    assert response.status_code == 200, response.text
    body = response.json()
    expected_messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": RENDERED}]
    assert body["session_code"] == code
    assert body["llm_result"] == f"echo: {RENDERED}"
    assert body["messages"] == expected_messages
    assert body["cached"] is False
    assert body["model"] == "scripted"
    assert body["usage"]["completion_tokens"] == len(f"echo: {RENDERED}".split(" "))
    assert body["created_at"]
    (call,) = mesh.backend.calls
    assert [(m.role, m.content) for m in call.request.messages] == [("system", SYSTEM), ("user", RENDERED)]
    assert (call.request.sampling.max_tokens, call.request.sampling.temperature) == (50, 0.0)
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()
    assert stored["latest_result"]["llm_result"] == body["llm_result"]
    assert stored["latest_result"]["messages"] == expected_messages
    assert stored["answers"] == [
        {"option": "fever", "label": "Fever", "value": "39.2 C"},
        {"option": "cough", "label": "Cough", "value": ""},
    ]


async def test_same_inputs_reuse_the_stored_result_without_a_model_call(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    first = (await run(mesh, code)).json()
    second = await run(mesh, code)
    assert second.status_code == 200
    assert second.json() == {**first, "cached": True}
    assert len(mesh.backend.calls) == 1


async def stored_session(mesh: Gateway, code: str) -> store_pb2.Session:
    """The session as the store hands it to the orchestrator (GetSession)."""
    assert mesh.settings is not None
    store = StoreClient.connect(mesh.settings.store_addr)
    try:
        return (await store.get_session(store_pb2.GetSessionRequest(session_code=code))).session
    finally:
        await store.close()


async def test_answers_keep_their_order_and_the_version_all_its_options(mesh: Gateway) -> None:
    """The store reads a session in one statement, one row per option: answers to some options, in
    another order than theirs, still come in the order given, and the version with every option."""
    await make_version(mesh)
    answers = [{"option": "note", "value": "since Monday"}, {"option": "fever", "value": "39.2 C"}]
    code = await make_session(mesh, answers)
    first = (await run(mesh, code)).json()
    assert first["messages"][1]["content"] == "Answers:\n* Note (since Monday)\n* Fever (39.2 C)"
    assert (await run(mesh, code)).json() == {**first, "cached": True}
    session = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()
    assert session["answers"] == [
        {"option": "note", "label": "Note", "value": "since Monday"},
        {"option": "fever", "label": "Fever", "value": "39.2 C"},
    ]
    stored = await stored_session(mesh, code)
    assert [(o.key, o.label) for o in stored.version.options] == [(o["key"], o["label"]) for o in OPTIONS]
    assert [(a.option_key, a.label, a.value) for a in stored.answers] == [
        ("note", "Note", "since Monday"),
        ("fever", "Fever", "39.2 C"),
    ]
    assert stored.latest_result.llm_result == first["llm_result"]


async def test_a_session_without_answers_on_a_version_without_options_is_read_whole(mesh: Gateway) -> None:
    version = await make_version(mesh, options=[])
    code = await make_session(mesh, None)
    stored = await stored_session(mesh, code)
    assert (stored.session_code, stored.version.number, stored.version.template_name) == (
        code,
        version["number"],
        "triage",
    )
    assert (list(stored.version.options), list(stored.answers)) == ([], [])
    assert not stored.HasField("latest_result")
    session = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()
    assert (session["answers"], session["latest_result"]) == ([], None)


async def test_force_regenerate_generates_anew_and_replaces_the_result(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    first = (await run(mesh, code)).json()
    await asyncio.sleep(0.01)
    again = (await run(mesh, code, force_regenerate=True)).json()
    assert again["cached"] is False
    assert again["created_at"] > first["created_at"]
    assert len(mesh.backend.calls) == 2
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"]
    assert stored["created_at"] == again["created_at"]
    assert (await run(mesh, code)).json()["cached"] is True


async def test_a_run_may_override_seed_and_temperature_and_each_is_its_own_result(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    plain = (await run(mesh, code)).json()
    seeded = (await run(mesh, code, seed=42, temperature=0.8)).json()
    assert seeded["cached"] is False and plain["cached"] is False
    sampling = mesh.backend.calls[-1].request.sampling
    assert (sampling.seed, round(sampling.temperature, 3)) == (42, 0.8)
    # the same override again is the same inputs: the stored result, no model call
    assert (await run(mesh, code, seed=42, temperature=0.8)).json()["cached"] is True
    assert len(mesh.backend.calls) == 2
    # a fresh seed is new inputs; the version's own options are too, now the stored result is another's
    assert (await run(mesh, code, seed=43, temperature=0.8)).json()["cached"] is False
    assert (await run(mesh, code)).json()["cached"] is False
    assert len(mesh.backend.calls) == 4
    queued = await run(mesh, code, seed=7, **{"async": True})
    assert queued.status_code == 202, queued.text
    for body, field in (
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": "7"}, "seed"),
    ):
        error = assert_error(await run(mesh, code, **body), 422, "invalid_request")
        assert field in error["message"]


async def test_changed_answers_invalidate_the_cache(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    await run(mesh, code)
    await mesh.client.put(f"/api/v1/sessions/{code}/answers", json={"answers": [{"option": "cough"}]})
    response = (await run(mesh, code)).json()
    assert response["cached"] is False
    assert response["messages"][1]["content"] == "Answers:\n* Cough"
    assert len(mesh.backend.calls) == 2


async def test_a_session_on_a_new_published_version_generates_anew(mesh: Gateway) -> None:
    await make_version(mesh)
    old = await make_session(mesh, ANSWERS)
    await run(mesh, old)
    await make_version(mesh, system_prompt="Be terse.")
    new = await make_session(mesh, ANSWERS)
    response = (await run(mesh, new)).json()
    assert response["cached"] is False
    assert response["messages"][0]["content"] == "Be terse."
    session = (await mesh.client.get(f"/api/v1/sessions/{new}")).json()
    assert (session["version"], session["version_status"]) == (2, "PUBLISHED")


async def test_default_rendering_without_a_user_template(mesh: Gateway) -> None:
    await make_version(mesh, user_prompt_template=None)
    code = await make_session(mesh, ANSWERS)
    response = (await run(mesh, code)).json()
    assert response["messages"][1]["content"] == "- Fever: 39.2 C\n- Cough"


async def test_an_empty_response_is_retried_once(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, [{"option": "note", "value": "EMPTY-ONCE"}])
    response = await run(mesh, code)
    assert response.status_code == 200
    assert response.json()["llm_result"].startswith("echo: ")
    assert len(mesh.backend.calls) == 2


async def test_two_empty_responses_are_an_error_and_nothing_is_stored(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, [{"option": "note", "value": "EMPTY"}])
    error = assert_error(await run(mesh, code), 502, "upstream_empty_response")
    assert "empty response twice" in error["message"]
    assert len(mesh.backend.calls) == 2
    assert (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"] is None


async def test_a_failed_run_never_overwrites_a_good_result(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    good = (await run(mesh, code)).json()
    await mesh.client.put(
        f"/api/v1/sessions/{code}/answers", json={"answers": [{"option": "note", "value": "PROVIDER-DOWN"}]}
    )
    error = assert_error(await run(mesh, code), 502, "upstream_error")
    assert "provider down" not in error["message"], "the provider's internals stay in the log"
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"]
    assert stored["llm_result"] == good["llm_result"]
    assert stored["created_at"] == good["created_at"]


async def test_a_deadline_is_504_and_nothing_is_stored(mesh: Gateway) -> None:
    await make_version(mesh, user_prompt_template="{{ answers[0].value }}")
    code = await make_session(mesh, [{"option": "note", "value": "stall"}])
    assert_error(await run(mesh, code), 504, "generation_timeout")
    assert (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"] is None


@pytest.mark.parametrize(
    ("version_fields", "publish", "answers", "status", "code", "named"),
    [
        ({}, True, [], 409, "no_answers", "no answers"),
        ({}, True, None, 409, "no_answers", "no answers"),
        ({}, False, ANSWERS, 409, "version_not_published", "DRAFT"),
        ({"system_prompt": None}, True, ANSWERS, 409, "missing_system_prompt", "system_prompt"),
        ({"system_prompt": "   "}, True, ANSWERS, 409, "missing_system_prompt", "system_prompt"),
        ({"llm_options": None}, True, ANSWERS, 409, "missing_llm_options", "llm_options"),
        (
            {"user_prompt_template": "{{ nope.x }}"},
            True,
            ANSWERS,
            409,
            "invalid_user_prompt_template",
            "nope",
        ),
        ({"user_prompt_template": "{% for %}"}, True, ANSWERS, 409, "invalid_user_prompt_template", "cannot"),
    ],
    ids=[
        "no-answers",
        "answers-never-put",
        "draft-version",
        "missing-system-prompt",
        "blank-system-prompt",
        "missing-llm-options",
        "undefined-in-template",
        "broken-template",
    ],
)
async def test_a_session_that_cannot_run_is_409_naming_why(
    mesh: Gateway,
    version_fields: dict[str, Any],
    publish: bool,
    answers: list[dict[str, str]] | None,
    status: int,
    code: str,
    named: str,
) -> None:
    version = await make_version(mesh, publish=publish, **version_fields)
    session = await make_session(mesh, answers, version=version["number"])
    error = assert_error(await run(mesh, session), status, code)
    assert named in error["message"]
    assert mesh.backend.calls == []
    assert (await mesh.client.get(f"/api/v1/sessions/{session}")).json()["latest_result"] is None


async def test_unknown_session_is_404(mesh: Gateway) -> None:
    assert_error(await run(mesh, "no-such-session"), 404, "session_not_found")
    assert_error(await mesh.client.get("/api/v1/sessions/no-such-session"), 404, "session_not_found")


async def test_streamed_run_sends_deltas_then_the_run(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    response = await run(mesh, code, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    kind, done = events[-1]
    assert kind == "done"
    assert "".join(deltas) == done["llm_result"] == f"echo: {RENDERED}"
    assert done["cached"] is False
    cached = sse_events((await run(mesh, code, stream=True)).text)
    assert [kind for kind, _ in cached] == ["done"]
    assert cached[0][1]["cached"] is True


async def test_streamed_run_of_an_unknown_session_is_404(mesh: Gateway) -> None:
    assert_error(await run(mesh, "no-such-session", stream=True), 404, "session_not_found")


async def test_management_walkthrough_and_its_errors(mesh: Gateway) -> None:
    client = mesh.client
    created = await client.post("/api/v1/templates", json={"name": "triage", "description": "Symptom triage"})
    assert created.status_code == 201
    assert created.json()["versions"] == []
    assert_error(await client.post("/api/v1/templates", json={"name": "triage"}), 409, "template_exists")
    assert_error(await client.post("/api/v1/templates", json={"name": "bad name!"}), 422, "invalid_request")
    assert_error(await client.get("/api/v1/templates/nope"), 404, "template_not_found")
    assert_error(
        await client.post("/api/v1/templates/nope/versions", json={"system_prompt": "x"}),
        404,
        "template_not_found",
    )
    assert_error(
        await client.post("/api/v1/templates/triage/versions", json={"options": [OPTIONS[0], OPTIONS[0]]}),
        400,
        "invalid_store_request",
    )
    assert_error(
        await client.post("/api/v1/templates/triage/versions", json={"llm_options": {"max_tokens": 5}}),
        422,
        "invalid_request",
    )
    assert_error(
        await client.post("/api/v1/sessions", json={"template": "triage"}), 409, "no_published_version"
    )

    version = await make_version(mesh, publish=False)
    assert (version["number"], version["status"], version["published_at"]) == (1, "DRAFT", None)
    options = await client.get("/api/v1/templates/triage/versions/1/options")
    assert options.json() == OPTIONS
    assert_error(await client.get("/api/v1/templates/triage/versions/9"), 404, "version_not_found")
    published = (await client.post("/api/v1/templates/triage/versions/1/publish")).json()
    assert published["status"] == "PUBLISHED"
    assert published["published_at"]
    archived = (await client.post("/api/v1/templates/triage/versions/1/archive")).json()
    assert archived["status"] == "ARCHIVED"
    assert_error(
        await client.post("/api/v1/templates/triage/versions/1/publish"), 409, "invalid_status_transition"
    )

    await make_version(mesh)
    session = await client.post("/api/v1/sessions", json={"template": "triage", "session_code": "visit-0001"})
    assert session.status_code == 201
    assert (session.json()["session_code"], session.json()["version"]) == ("visit-0001", 2)
    assert_error(
        await client.post("/api/v1/sessions", json={"template": "triage", "session_code": "visit-0001"}),
        409,
        "session_exists",
    )
    error = assert_error(
        await client.put("/api/v1/sessions/visit-0001/answers", json={"answers": [{"option": "rash"}]}),
        400,
        "unknown_option",
    )
    assert "rash" in error["message"]
    assert_error(
        await client.put("/api/v1/sessions/visit-0001/answers", json={"answers": [{"option": 3}]}),
        422,
        "invalid_request",
    )
    assert_error(
        await client.put(
            "/api/v1/sessions/visit-0001/answers",
            json={"answers": [{"option": "fever"}, {"option": "fever"}]},
        ),
        400,
        "invalid_store_request",
    )
    template = (await client.get("/api/v1/templates/triage")).json()
    assert [(v["number"], v["status"]) for v in template["versions"]] == [(1, "ARCHIVED"), (2, "PUBLISHED")]


async def test_templates_are_listed_by_name_a_page_at_a_time(mesh: Gateway) -> None:
    for name in ("triage", "intake", "zeta"):
        await make_version(mesh, template=name, publish=name != "zeta")
    first = await mesh.client.get("/api/v1/templates", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [t["name"] for t in page["data"]] == ["intake", "triage"]
    assert (page["object"], page["first_id"], page["last_id"], page["has_more"]) == (
        "list",
        "intake",
        "triage",
        True,
    )
    assert [v["status"] for v in page["data"][1]["versions"]] == ["PUBLISHED"]
    rest = (await mesh.client.get("/api/v1/templates", params={"after": "triage"})).json()
    assert [(t["name"], [v["status"] for v in t["versions"]]) for t in rest["data"]] == [("zeta", ["DRAFT"])]
    assert rest["has_more"] is False
    assert_error(await mesh.client.get("/api/v1/templates", params={"limit": 101}), 422, "invalid_request")


async def test_a_draft_is_edited_in_place_and_a_published_version_is_final(mesh: Gateway) -> None:
    draft = await make_version(mesh, publish=False)
    url = f"/api/v1/templates/triage/versions/{draft['number']}"
    edited = await mesh.client.put(
        url,
        json={
            "system_prompt": "You are brief.",
            "llm_options": {"model": "scripted", "max_tokens": 9},
            "options": [{"key": "cough", "label": "Cough"}, {"key": "rash", "label": "Rash"}],
        },
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["number"], body["status"], body["system_prompt"], body["user_prompt_template"]) == (
        draft["number"],
        "DRAFT",
        "You are brief.",
        None,
    )
    assert [o["key"] for o in body["options"]] == ["cough", "rash"]
    assert (await mesh.client.get(url)).json() == body
    assert (await mesh.client.post(f"{url}/publish")).status_code == 200
    assert_error(await mesh.client.put(url, json={"system_prompt": "x"}), 409, "version_not_draft")
    assert_error(
        await mesh.client.put("/api/v1/templates/triage/versions/9", json={}), 404, "version_not_found"
    )
    twice = {"options": [{"key": "a", "label": "A"}, {"key": "a", "label": "B"}]}
    other = await make_version(mesh, publish=False)
    assert_error(
        await mesh.client.put(f"/api/v1/templates/triage/versions/{other['number']}", json=twice),
        400,
        "invalid_store_request",
    )


async def test_run_body_is_validated(mesh: Gateway) -> None:
    assert_error(
        await mesh.client.post("/api/v1/sessions/x/llm", json={"force_regenerate": "yes"}),
        422,
        "invalid_request",
    )


async def test_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": managed_by_orm}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("number", [2**31, 2**63, 0])
async def test_a_version_number_outside_int32_is_a_bad_field_not_a_500(mesh: Gateway, number: int) -> None:
    await make_version(mesh)
    base = "/api/v1/templates/triage/versions"
    for response in (
        await mesh.client.get(f"{base}/{number}"),
        await mesh.client.get(f"{base}/{number}/options"),
        await mesh.client.post(f"{base}/{number}/publish"),
        await mesh.client.post(f"{base}/{number}/archive"),
        await mesh.client.post("/api/v1/sessions", json={"template": "triage", "version": number}),
    ):
        error = assert_error(response, 422, "invalid_request")
        assert error["details"][0]["field"] in ("path.number", "version"), error


async def test_a_value_postgresql_cannot_store_is_a_400_and_logged(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL character in text is the caller's data error, never "the database is unreachable"."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite stores a NUL character; only PostgreSQL refuses it")
    async with scripted_mesh(database_url) as mesh:
        await make_version(mesh)
        code = await make_session(mesh, None)
        with caplog.at_level(logging.WARNING, logger="llmmesh.store"):
            response = await mesh.client.put(
                f"/api/v1/sessions/{code}/answers", json={"answers": [{"option": "fever", "value": "3\x009"}]}
            )
        error = assert_error(response, 400, "invalid_store_request")
        assert "NUL" in error["message"]
        (refused,) = [r for r in caplog.records if r.getMessage() == "database refused a value"]
        assert getattr(refused, "sqlstate", "") == "22021"
        # Nothing was half-written: the session still has no answers.
        assert (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["answers"] == []


# The first users' diagnostic front end calls POST /sessions/{code}/llm, without the API's prefix.
FIRST_USERS_RUN = "/sessions/{code}/llm"


async def run_unprefixed(mesh: Gateway, code: str, **body: Any) -> Any:
    return await mesh.client.post(FIRST_USERS_RUN.format(code=code), json=body or None)


async def test_the_unprefixed_run_answers_as_the_api_does(mesh: Gateway) -> None:
    await make_version(mesh)
    code = await make_session(mesh, ANSWERS)
    first = await run_unprefixed(mesh, code)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["session_code"], body["llm_result"], body["cached"]) == (code, f"echo: {RENDERED}", False)
    assert first.headers["x-request-id"]
    again = await run_unprefixed(mesh, code)
    assert (again.status_code, again.json()) == (200, {**body, "cached": True})
    assert (await run(mesh, code)).json() == {**body, "cached": True}  # the same stored result
    assert len(mesh.backend.calls) == 1
    await asyncio.sleep(0.01)
    fresh = (await run_unprefixed(mesh, code, force_regenerate=True)).json()
    assert fresh["cached"] is False and fresh["created_at"] > body["created_at"]
    assert len(mesh.backend.calls) == 2
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"]
    assert stored["created_at"] == fresh["created_at"]
    streamed = sse_events((await run_unprefixed(mesh, code, stream=True)).text)
    assert [kind for kind, _ in streamed] == ["done"] and streamed[0][1]["cached"] is True


async def test_the_unprefixed_run_refuses_as_the_api_does(mesh: Gateway) -> None:
    error = assert_error(await run_unprefixed(mesh, "no-such-session"), 404, "session_not_found")
    assert "no-such-session" in error["message"]
    draft = await make_version(mesh, publish=False)
    on_draft = await make_session(mesh, ANSWERS, version=draft["number"])
    assert (
        "DRAFT" in assert_error(await run_unprefixed(mesh, on_draft), 409, "version_not_published")["message"]
    )
    await make_version(mesh)
    unanswered = await make_session(mesh, [])
    assert_error(await run_unprefixed(mesh, unanswered), 409, "no_answers")
    assert_error(await run_unprefixed(mesh, unanswered, force_regenerate="yes"), 422, "invalid_request")
    assert mesh.backend.calls == []
    # Only the run has an unprefixed path: the rest of the API keeps its prefix.
    assert_error(await mesh.client.get(f"/sessions/{unanswered}"), 404, "route_not_found")


async def test_the_unprefixed_run_needs_a_key_when_auth_is_on(tmp_path: Path) -> None:
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as mesh:
        assert_error(await run_unprefixed(mesh, "any"), 401, "missing_api_key")
        mesh.client.headers["Authorization"] = f"Bearer {await create_key(mesh)}"
        await make_version(mesh)
        code = await make_session(mesh, ANSWERS)
        assert (await run_unprefixed(mesh, code)).json()["llm_result"] == f"echo: {RENDERED}"


async def test_the_api_prefix_is_a_setting(tmp_path: Path) -> None:
    """GATEWAY_API_PREFIX moves the mesh's own REST API (and its WebSocket); the OpenAI API, the
    unprefixed session run and the URLs the API hands out follow."""
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings={"api_prefix": "/custom"}
    ) as mesh:
        await make_version(mesh)  # made under /custom (tests/support/sessions.py follows the setting)
        code = await make_session(mesh, ANSWERS)
        ran = await mesh.client.post(f"/custom/sessions/{code}/llm")
        assert (ran.status_code, ran.json()["llm_result"]) == (200, f"echo: {RENDERED}")
        assert (await run_unprefixed(mesh, code)).json()["cached"] is True
        assert_error(await mesh.client.post(f"/api/v1/sessions/{code}/llm"), 404, "route_not_found")
        assert_error(await mesh.client.get("/api/v1/models"), 404, "route_not_found")
        assert (await mesh.client.get("/custom/models")).status_code == 200
        assert (await mesh.client.post("/custom/ai/generate", json={"prompt": "hi"})).json()[
            "text"
        ] == "echo: hi"
        assert (await mesh.client.get("/v1/models")).status_code == 200
        queued = await mesh.client.post(
            f"/custom/sessions/{code}/llm", json={"async": True, "force_regenerate": True}
        )
        assert queued.status_code == 202, queued.text
        status_url = queued.json()["status_url"]
        assert status_url.startswith("/custom/ai/status/") and queued.headers["location"] == status_url
        assert (await mesh.client.get(status_url)).status_code == 200
        async with connect(f"{str(mesh.client.base_url).replace('http', 'ws')}/custom/chat/ws") as socket:
            await socket.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(socket.recv(), 5)) == {"type": "pong"}
        paths = (await mesh.client.get("/openapi.json")).json()["paths"]
        assert "/custom/sessions/{session_code}/llm" in paths and "/sessions/{session_code}/llm" in paths
        assert not [path for path in paths if path.startswith("/api/v1")]


@pytest.mark.parametrize(
    "prefix", ["custom", "/custom/", "/v1", "/v1/x", "/admin", "/socket.io", "/a b", "/api", "/api/v2"]
)
def test_an_api_prefix_that_cannot_work_is_refused_at_startup(prefix: str) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(api_prefix=prefix)
