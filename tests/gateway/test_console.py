"""The web console in a real browser (Debian's chromium driven by Playwright) in front of the whole
mesh: scripted models for the flows that need a scripted failure or a slow stream, the real Gemma 3
270M model for one chat. Assertions are on what the page shows.

Set LLM_MESH_CONSOLE_SCREENSHOTS to a folder (docs/console) to save the main pages as PNG there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.registry import parse_registry
from services.inference.backends import create_backend
from services.inference.config import InferenceSettings
from services.inference.errors import ProviderAuthFailed, ProviderUnavailable
from tests.support.auth import ADMIN, ADMIN_TOKEN, create_key
from tests.support.fakes import ToolScriptedBackend
from tests.support.mesh import Gateway, eventually, scripted_mesh, scripted_registry
from tests.support.sessions import make_version

CHROMIUM = os.environ.get("LLM_MESH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("LLM_MESH_CONSOLE_SCREENSHOTS")
if SCREENSHOTS:
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is a dev dependency")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(),
    reason=f"no chromium at {CHROMIUM}: apt-get install chromium (or set LLM_MESH_CHROMIUM); .ci/run does",
)
# Generous for the real model on a busy CI machine; the scripted flows finish in milliseconds.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", generation_timeout_s=20
    ) as gateway:
        yield gateway


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def open_console(browser: Any, mesh: Gateway, fragment: str = "", **context: Any) -> Any:
    """A fresh browser context on the console; every request that leaves the mesh fails the test."""
    page_context = await browser.new_context(locale="en-US", **context)
    base = str(mesh.client.base_url).rstrip("/")
    outside: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(base) or route.request.url.startswith("data:"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page_context.route("**/*", only_the_gateway)
    page = await page_context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.outside = outside
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.page_errors = errors
    await page.goto(f"{base}/{fragment}")
    return page


async def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


async def send(page: Any, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send", exact=True).click()


def last_answer(page: Any) -> Any:
    return page.locator("#pg-transcript li.message.assistant").last


async def test_the_console_page_and_its_assets_are_served(mesh: Gateway) -> None:
    page = await mesh.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta name="llmmesh-api-prefix" content="/api/v1">' in page.text
    assert not re.search(r"https?://", page.text)
    for asset in (
        "app.js",
        "api.js",
        "playground.js",
        "sessions.js",
        "jobs.js",
        "models.js",
        "admin.js",
        "style.css",
        "i18n/en.json",
        "i18n/ja.json",
    ):
        response = await mesh.client.get(f"/console/{asset}")
        assert response.status_code == 200, asset
    script = await mesh.client.get("/console/app.js")
    assert "javascript" in script.headers["content-type"]  # ES modules need a JavaScript type


async def test_the_two_catalogues_have_the_same_strings(mesh: Gateway) -> None:
    english = (await mesh.client.get("/console/i18n/en.json")).json()
    japanese = (await mesh.client.get("/console/i18n/ja.json")).json()
    assert english.keys() == japanese.keys()
    assert all(
        japanese[key] and japanese[key] != english[key]
        for key in japanese
        if key not in {"playground.api", "sessions.example.name"}
    )


async def test_a_chat_streams_in_and_says_what_served_it(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await expect(page.get_by_label("Model or route")).to_have_value("default")
    await page.get_by_label("System prompt").fill("Be brief.")
    await page.get_by_label("Temperature").fill("0")
    await page.get_by_label("Seed").fill("7")
    await send(page, "hello there")
    answer = last_answer(page)
    await expect(answer.locator(".content")).to_have_text("echo: hello there")
    meta = answer.locator(".meta")
    await expect(meta.locator('[data-figure="model"] .value')).to_have_text("default")
    await expect(meta.locator('[data-figure="completion_tokens"] .value')).to_have_text("3")
    await expect(meta.locator('[data-figure="ttft"]')).to_contain_text("ms")
    (call,) = mesh.backend.calls
    assert [(m.role, m.content) for m in call.request.messages] == [
        ("system", "Be brief."),
        ("user", "hello there"),
    ]
    assert (call.request.sampling.temperature, call.request.sampling.seed) == (0.0, 7)
    # the next turn sends the whole conversation
    await send(page, "and again")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: and again")
    assert [m.content for m in mesh.backend.calls[-1].request.messages] == [
        "Be brief.",
        "hello there",
        "echo: hello there",
        "and again",
    ]
    await screenshot(page, "playground")
    assert page.outside == [] and page.page_errors == []


async def test_the_generate_api_shows_route_and_tier(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await page.get_by_label("API", exact=True).select_option("generate")
    await page.get_by_label("Model or route").select_option("scripted")
    await send(page, "one prompt")
    meta = last_answer(page).locator(".meta")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: one prompt")
    await expect(meta.locator('[data-figure="model"] .value')).to_have_text("scripted")
    await expect(meta.locator('[data-figure="route"] .value')).to_have_text("scripted")
    await expect(meta.locator('[data-figure="tier"] .value')).to_have_text("0")
    await expect(meta.locator('[data-figure="speed"]')).to_contain_text("tokens/s")


async def test_a_stored_conversation_sends_only_the_new_turn(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await page.get_by_label("Stored conversation").check()
    conversation = await page.get_by_label("Conversation id").input_value()
    assert conversation.startswith("console-")
    await send(page, "my name is Ada")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: my name is Ada")
    await send(page, "what is my name")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: what is my name")
    # the mesh put the stored turns before the new one
    assert [m.content for m in mesh.backend.calls[-1].request.messages] == [
        "my name is Ada",
        "echo: my name is Ada",
        "what is my name",
    ]
    stored = await mesh.client.get(f"/api/v1/conversations/{conversation}")
    assert [m["content"] for m in stored.json()["messages"]][-1] == "echo: what is my name"


@pytest.fixture
async def tool_mesh(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The mesh on a scripted model that keeps JSON constraints and calls tools."""
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        generation_timeout_s=20,
        backends=[ToolScriptedBackend()],
    ) as gateway:
        yield gateway


async def test_the_playground_asks_for_json_under_a_schema(tool_mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, tool_mesh)
    await page.get_by_label("Answer as").select_option("json_schema")
    schema = page.get_by_label("JSON schema")
    # a schema that is not JSON is named, nothing is sent, and the message stays to edit
    await schema.fill('{"type": "object",')
    await send(page, "hello")
    await expect(page.locator("#pg-status .error-code")).to_have_text("invalid_json")
    await expect(page.locator("#pg-status .error-message")).to_contain_text("JSON schema is not JSON")
    await expect(page.get_by_label("Message")).to_have_value("hello")
    assert tool_mesh.backend.calls == []
    given = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    await schema.fill(json.dumps(given))
    await page.get_by_role("button", name="Send").click()
    answer = last_answer(page)
    await expect(answer.locator(".badge.json-ok")).to_have_text("Valid JSON")
    assert json.loads(await answer.locator(".content").text_content() or "") == {"echo": "hello"}
    await expect(answer.locator(".content")).to_contain_text('\n  "echo": "hello"\n')  # shown indented
    (call,) = tool_mesh.backend.calls
    assert call.request.constraint is not None
    assert (call.request.constraint.kind, call.request.constraint.json_schema) == ("json_schema", given)
    # plain JSON mode asks for any object
    await page.get_by_label("Answer as").select_option("json_object")
    await expect(schema).to_be_hidden()
    await send(page, "again")
    await expect(last_answer(page).locator(".badge.json-ok")).to_have_text("Valid JSON")
    assert tool_mesh.backend.calls[-1].request.constraint.kind == "json_object"
    # the other APIs take no JSON or tools: the controls say so by being off
    await page.get_by_label("API", exact=True).select_option("websocket")
    await expect(page.get_by_label("Answer as")).to_be_disabled()
    assert page.outside == [] and page.page_errors == []


@pytest.mark.parametrize("stored", [True, False], ids=["stored-conversation", "whole-conversation"])
async def test_a_tool_call_round_trip_in_the_playground(
    tool_mesh: Gateway, browser: Any, stored: bool
) -> None:
    page = await open_console(browser, tool_mesh)
    if stored:  # each request sends only the new turns; the mesh keeps the calls too
        await page.get_by_label("Stored conversation").check()
    conversation = await page.get_by_label("Conversation id").input_value()
    await page.get_by_label("Let the model call tools").check()
    await page.get_by_label("Tool choice").select_option("required")
    await send(page, "Tokyo")
    asking = page.locator("#pg-transcript li.message.assistant").first
    await expect(asking.locator(".tool-call code")).to_have_text('get_weather({"city": "Tokyo"})')
    await expect(asking.get_by_label("Result of get_weather")).to_be_focused()
    first = tool_mesh.backend.calls[0].request
    assert first.tooling is not None
    assert (first.tooling.choice, [t.name for t in first.tooling.tools]) == ("required", ["get_weather"])
    assert first.tooling.tools[0].schema()["required"] == ["city"]
    await screenshot(page, "playground-tools")
    # no message can go between the calls and their results
    await send(page, "never mind")
    await expect(page.locator("#pg-status .error-code")).to_have_text("tool_results_pending")
    await expect(page.get_by_label("Message")).to_have_value("never mind")
    assert len(tool_mesh.backend.calls) == 1
    await page.get_by_label("Message").fill("")
    await asking.get_by_label("Result of get_weather").fill("sunny, 21 °C")
    await asking.get_by_role("button", name="Send the results").click()
    await expect(last_answer(page).locator(".content")).to_have_text("echo: tool said sunny, 21 °C")
    await expect(page.get_by_role("button", name="Send the results")).to_have_count(0)
    user, asked, told = tool_mesh.backend.calls[-1].request.messages
    assert (user.role, user.content) == ("user", "Tokyo")
    assert (asked.role, [(c.name, json.loads(c.arguments)) for c in asked.tool_calls]) == (
        "assistant",
        [("get_weather", {"city": "Tokyo"})],
    )
    assert (told.role, told.content, told.tool_call_id) == ("tool", "sunny, 21 °C", asked.tool_calls[0].id)
    await expect(page.locator("#pg-transcript li.message.tool .role")).to_have_text("Tool (get_weather)")
    if stored:
        kept = (await tool_mesh.client.get(f"/api/v1/conversations/{conversation}")).json()["messages"]
        assert [m["role"] for m in kept] == ["user", "assistant", "tool", "assistant"]
        assert kept[1]["tool_calls"][0]["id"] == asked.tool_calls[0].id
        assert kept[3]["content"] == "echo: tool said sunny, 21 °C"
    assert page.outside == [] and page.page_errors == []


async def test_stop_ends_the_stream_mid_answer(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await send(page, "slow 200")
    answer = last_answer(page)
    await expect(answer.locator(".content")).to_contain_text("t3 ")
    await page.get_by_role("button", name="Stop").click()
    await expect(answer.locator(".stopped")).to_have_text(
        "Stopped: the rest of the answer was not generated."
    )
    await eventually(lambda: mesh.backend.calls[-1].cancelled, timeout_s=5)
    assert mesh.backend.calls[-1].cancelled  # the model stopped too
    shown = await answer.locator(".content").text_content()
    await page.wait_for_timeout(300)
    assert await answer.locator(".content").text_content() == shown
    assert "t199" not in shown
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    await expect(page.get_by_role("button", name="Stop")).to_be_disabled()


async def test_the_websocket_mode_chats_turn_by_turn_and_stops(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await page.get_by_label("API", exact=True).select_option("websocket")
    await page.get_by_label("System prompt").fill("Be brief.")
    await send(page, "hello socket")
    answer = last_answer(page)
    await expect(answer.locator(".content")).to_have_text("echo: hello socket")
    meta = answer.locator(".meta")
    await expect(meta.locator('[data-figure="route"] .value')).to_have_text("default")
    await expect(meta.locator('[data-figure="tier"] .value')).to_have_text("0")
    await expect(meta.locator('[data-figure="completion_tokens"] .value')).to_have_text("3")
    await send(page, "and again")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: and again")
    assert [m.content for m in mesh.backend.calls[-1].request.messages] == [
        "Be brief.",
        "hello socket",
        "echo: hello socket",
        "and again",
    ]
    # Stop cancels the turn on the socket; the model stops and the socket serves the next turn
    await send(page, "slow 200")
    await expect(last_answer(page).locator(".content")).to_contain_text("t3 ")
    await page.get_by_role("button", name="Stop").click()
    await expect(last_answer(page).locator(".stopped")).to_be_visible()
    await eventually(lambda: mesh.backend.calls[-1].cancelled, timeout_s=5)
    assert mesh.backend.calls[-1].cancelled
    await send(page, "after the stop")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: after the stop")
    assert page.outside == [] and page.page_errors == []


async def test_a_failing_provider_shows_its_error_code(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await send(page, "PROVIDER-DOWN now")
    alert = page.get_by_role("alert").filter(has_text="Error")
    await expect(alert.locator(".error-code")).to_have_text("upstream_error")
    await expect(alert).to_contain_text("Request id:")
    assert await page.locator("#pg-transcript li.message.assistant").count() == 0


async def load_template(page: Any, name: str = "triage") -> None:
    await page.get_by_label("Template", exact=True).select_option(name)
    await expect(page.get_by_label("Version")).to_have_value("1")


async def test_a_session_runs_reloads_and_regenerates(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh)
    page = await open_console(browser, mesh, "#/sessions")
    await load_template(page)
    await page.get_by_label("Fever", exact=True).check()
    await page.get_by_label("Detail for Fever (optional)").fill("three days")
    await page.get_by_label("Cough", exact=True).check()
    await screenshot(page, "sessions")
    await page.get_by_role("button", name="Run").click()
    result = page.locator("#result-text")
    await expect(page.locator("#result-title")).to_have_text("Result")
    await expect(result).to_contain_text("echo: Answers:")
    await expect(result).to_contain_text("Fever (three days)")
    await expect(page.locator("#result-origin")).to_have_text("New result")
    await expect(page.locator("#greedy-note")).to_contain_text("temperature 0")
    code = page.url.rsplit("/", 1)[1]
    first = await result.get_attribute("data-created-at")
    assert len(mesh.backend.calls) == 1
    await screenshot(page, "session-result")
    # a reload shows the stored result, with no model call
    await page.reload()
    await expect(page.locator("#result-origin")).to_have_text("Stored result")
    await expect(result).to_contain_text("Fever (three days)")
    assert await result.get_attribute("data-created-at") == first
    assert len(mesh.backend.calls) == 1
    # regenerate runs the model again and replaces the stored result
    await page.get_by_role("button", name="Regenerate").click()
    await expect(page.locator("#result-origin")).to_have_text("New result")
    assert len(mesh.backend.calls) == 2
    second = await result.get_attribute("data-created-at")
    assert second != first
    stored = (await mesh.client.get(f"/api/v1/sessions/{code}")).json()["latest_result"]
    assert stored["created_at"].replace("+00:00", "Z").rstrip("Z") == second.replace("+00:00", "Z").rstrip(
        "Z"
    )
    await page.reload()
    await expect(page.locator("#result-origin")).to_have_text("Stored result")
    assert await result.get_attribute("data-created-at") == second
    assert page.outside == [] and page.page_errors == []


async def test_regenerate_on_a_sampling_version_uses_a_fresh_seed(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh, llm_options={"model": "scripted", "max_tokens": 50, "temperature": 0.7})
    page = await open_console(browser, mesh, "#/sessions")
    await load_template(page)
    await page.get_by_label("Cough", exact=True).check()
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#result-origin")).to_have_text("New result")
    await expect(page.locator("#greedy-note")).to_have_count(0)  # the text can change here
    first = mesh.backend.calls[-1].request.sampling
    assert first.seed is None  # the first run samples as the version says
    seeds = []
    for _ in range(2):
        created = await page.locator("#result-text").get_attribute("data-created-at")
        await page.get_by_role("button", name="Regenerate").click()
        await expect(page.locator("#result-text")).not_to_have_attribute("data-created-at", created or "")
        await expect(page.locator("#result-origin")).to_have_text("New result")
        sampling = mesh.backend.calls[-1].request.sampling
        assert sampling.seed is not None and round(sampling.temperature or 0, 3) == 0.7
        seeds.append(sampling.seed)
    assert len(mesh.backend.calls) == 3 and seeds[0] != seeds[1]


async def test_a_newcomer_writes_the_example_and_runs_it_as_a_job(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh, template="unpublished", publish=False)  # not offered: nothing to run
    page = await open_console(browser, mesh, "#/sessions")
    await expect(page.locator("#ss-chooser")).to_contain_text("No template has a published version yet")
    await expect(page.get_by_label("Template", exact=True)).to_be_hidden()
    await page.get_by_role("button", name="Create the example questionnaire").click()
    await expect(page.get_by_label("Template", exact=True)).to_have_value("work-style-check")
    await page.get_by_label("I like working in a team", exact=True).check()
    await page.get_by_label("I enjoy trying new things", exact=True).check()
    await page.get_by_label("Run as a background job", exact=False).check()
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#result-title")).to_have_text("Result")
    result = page.locator("#result-text")
    await expect(result).to_contain_text("echo: The statements I chose:")
    await expect(result).to_contain_text("I like working in a team")
    await expect(result).to_contain_text("I enjoy trying new things")
    await expect(result).not_to_contain_text("morning")
    job_line = page.locator("#result-job")
    await expect(job_line).to_contain_text("Succeeded")
    # the run was a job of the key's project: listed on the Jobs page, with its result
    jobs = (await mesh.client.get("/api/v1/jobs")).json()["data"]
    assert [(j["kind"], j["status"]) for j in jobs] == [("session", "SUCCEEDED")]
    await expect(job_line).to_contain_text(jobs[0]["job_id"][:8])
    assert jobs[0]["result"]["llm_result"] == await result.text_content()
    await page.get_by_role("link", name="See it on the Jobs page").click()
    row = job_row(page, jobs[0]["job_id"])
    await expect(row).to_contain_text("Session run")
    await expect(row.locator("[data-status]")).to_have_text("Succeeded")
    # the choice is kept for the tab: Regenerate goes through the queue too
    await page.go_back()
    await expect(page.get_by_label("Run as a background job", exact=False)).to_be_checked()
    await page.get_by_role("button", name="Regenerate").click()
    await expect(page.locator("#result-origin")).to_have_text("New result")
    jobs = (await mesh.client.get("/api/v1/jobs")).json()["data"]
    assert [(j["kind"], j["status"]) for j in jobs] == [("session", "SUCCEEDED")] * 2
    assert jobs[0]["result"]["llm_result"] == await result.text_content()
    template = (await mesh.client.get("/api/v1/templates/work-style-check")).json()
    assert [(v["number"], v["status"]) for v in template["versions"]] == [(1, "PUBLISHED")]
    assert template["versions"][0]["llm_options"]["model"] == "default"
    assert page.outside == [] and page.page_errors == []


@pytest.mark.parametrize(
    ("as_job", "failure", "code"),
    [
        (False, ProviderUnavailable("the provider is down"), "upstream_unavailable"),
        # a job is refused for good: a retryable failure is retried by the queue before the job fails
        (True, ProviderAuthFailed("the provider refused the key"), "upstream_auth_failed"),
    ],
    ids=["streamed", "as-a-job"],
)
async def test_a_provider_failure_offers_a_retry_that_succeeds(
    mesh: Gateway, browser: Any, as_job: bool, failure: Exception, code: str
) -> None:
    await make_version(mesh)
    page = await open_console(browser, mesh, "#/sessions")
    await load_template(page)
    await page.get_by_label("Cough", exact=True).check()
    if as_job:
        await page.get_by_label("Run as a background job", exact=False).check()
    mesh.backend.refuse = failure
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#result-title")).to_have_text("The run failed")
    alert = page.get_by_role("alert").filter(has_text="Error")
    await expect(alert.locator(".error-code")).to_have_text(code)
    await expect(alert.locator(".error-message")).to_have_text(str(failure))
    await expect(alert).to_contain_text("Request id")
    if not as_job:
        await screenshot(page, "session-error")
    mesh.backend.refuse = None
    await alert.get_by_role("button", name="Retry").click()
    await expect(page.locator("#result-title")).to_have_text("Result")
    await expect(page.locator("#result-text")).to_contain_text("echo: Answers:")
    await expect(page.locator("#result-origin")).to_have_text("New result")
    statuses = sorted(j["status"] for j in (await mesh.client.get("/api/v1/jobs")).json()["data"])
    assert statuses == (["FAILED", "SUCCEEDED"] if as_job else [])


async def test_a_job_run_can_be_cancelled_from_its_screen_and_run_again(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh, user_prompt_template="slow 200")  # 200 pieces, 50 ms apart: 10 s
    page = await open_console(browser, mesh, "#/sessions")
    await load_template(page)
    await page.get_by_label("Cough", exact=True).check()
    await page.get_by_label("Run as a background job", exact=False).check()
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#result-loading")).to_contain_text("Queued as a job")
    await expect(page.locator("#result-job [data-status]")).to_have_text("Running")
    await page.get_by_role("button", name="Cancel the job").click()
    await expect(page.locator("#result-title")).to_have_text("The run failed")
    [job] = (await mesh.client.get("/api/v1/jobs")).json()["data"]
    assert job["status"] == "CANCELLED"
    await eventually(lambda: mesh.backend.calls and mesh.backend.calls[-1].cancelled)
    assert mesh.backend.calls[-1].cancelled  # the model stopped too
    # Retry makes a new run (the cancelled job is over); leaving the screen stops following it
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#result-job [data-status]")).to_have_text("Running")
    jobs = (await mesh.client.get("/api/v1/jobs")).json()["data"]
    assert [j["status"] for j in jobs] == ["RUNNING", "CANCELLED"]
    await page.get_by_role("link", name="Jobs").click()
    polled: list[str] = []
    page.on("request", lambda request: polled.append(request.url) if "/ai/status/" in request.url else None)
    await page.wait_for_timeout(2500)
    assert polled == []
    assert page.outside == [] and page.page_errors == []


async def test_the_example_is_written_in_the_consoles_language(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh, "#/sessions")
    await page.get_by_label("Language").select_option("ja")
    await page.get_by_role("button", name="サンプルの診断を作成").click()
    await expect(page.get_by_label("テンプレート", exact=True)).to_have_value("work-style-check")
    await page.get_by_label("チームで働くのが好き", exact=True).check()
    await page.get_by_role("button", name="実行").click()
    await expect(page.locator("#result-title")).to_have_text("結果")
    await expect(page.locator("#result-text")).to_contain_text("私が選んだ文")
    await expect(page.locator("#result-text")).to_contain_text("チームで働くのが好き")
    version = (await mesh.client.get("/api/v1/templates/work-style-check/versions/1")).json()
    assert "日本語で答えてください" in version["system_prompt"]


async def test_japanese_is_switchable_and_remembered(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await send(page, "hello")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: hello")
    await page.get_by_label("Language").select_option("ja")
    await expect(page.get_by_role("button", name="送信")).to_be_visible()
    await expect(page.get_by_role("link", name="セッション")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "ja")
    await expect(last_answer(page).locator('[data-figure="completion_tokens"] .label')).to_have_text(
        "出力トークン"
    )
    await screenshot(page, "playground-ja")
    await page.reload()
    await expect(page.get_by_label("言語")).to_have_value("ja")
    await expect(page.get_by_role("button", name="送信")).to_be_visible()
    await page.get_by_label("言語").select_option("en")
    await expect(page.get_by_role("button", name="Send")).to_be_visible()


async def test_dates_and_numbers_follow_the_locale(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh)
    page = await open_console(browser, mesh, "#/sessions")
    await load_template(page)
    await page.get_by_label("Fever", exact=True).check()
    await page.get_by_role("button", name="Run").click()
    created = page.locator("#result-created")
    await expect(created).to_have_text(re.compile(r"[A-Z][a-z]{2} \d+, \d{4}"))  # e.g. Nov 21, 2026
    await page.get_by_label("Language").select_option("ja")
    await expect(created).to_have_text(re.compile(r"\d{4}/\d{1,2}/\d{1,2}"))  # 2026/11/21
    await expect(page.locator("#result-origin")).to_have_text("新しい結果")


async def test_the_key_is_asked_for_when_auth_is_on_and_kept_for_the_tab(
    tmp_path: Path, browser: Any
) -> None:
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", gateway_settings=settings) as mesh:
        key = await create_key(mesh)
        page = await open_console(browser, mesh)
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()  # the models list got a 401
        await expect(dialog.locator("#key-reason")).to_contain_text("missing_api_key")
        await dialog.get_by_label("Key").fill("llmk_wrong")
        await dialog.get_by_role("button", name="Use this key").click()
        await expect(dialog.locator("#key-reason")).to_contain_text("invalid_api_key")
        await dialog.get_by_label("Key").fill(key)
        await dialog.get_by_role("button", name="Use this key").click()
        await expect(dialog).to_be_hidden()
        await expect(page.get_by_label("Model or route")).to_have_value("default")
        await send(page, "with a key")
        await expect(last_answer(page).locator(".content")).to_have_text("echo: with a key")
        # the WebSocket takes the same key (in its query: a browser cannot set a socket's headers)
        await page.get_by_label("API", exact=True).select_option("websocket")
        await send(page, "over the socket")
        await expect(last_answer(page).locator(".content")).to_have_text("echo: over the socket")
        assert await page.evaluate("sessionStorage.getItem('llmmesh.apiKey')") == key
        assert key not in await page.evaluate("JSON.stringify(localStorage)")
        # a new tab (another session storage) asks again
        other = await page.context.new_page()
        await other.goto(page.url)
        await expect(other.get_by_role("dialog")).to_be_visible()


async def test_readable_at_375_px_and_usable_by_keyboard(mesh: Gateway, browser: Any) -> None:
    await make_version(mesh)
    page = await open_console(browser, mesh, viewport={"width": 375, "height": 800})
    await expect(page.get_by_label("Model or route")).to_have_value("default")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    # keyboard only: focus the message box, type, send with Ctrl+Enter
    await page.get_by_label("Message").focus()
    await page.keyboard.type("typed")
    await page.keyboard.press("Control+Enter")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: typed")
    await page.goto(page.url.split("#")[0] + "#/sessions")
    await load_template(page)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(page, "sessions-375px")
    await assert_every_control_is_named(page)
    # the other pages, each with something on it, fit and are named too
    started = await mesh.client.post("/api/v1/ai/generate", json={"prompt": "queued", "async": True})
    assert started.status_code == 202
    for fragment, heading in (
        ("jobs", "Jobs and pipelines"),
        ("models", "Models and pools"),
        ("admin", "Admin"),
    ):
        await page.goto(page.url.split("#")[0] + f"#/{fragment}")
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375, fragment
        await assert_every_control_is_named(page)
    await screenshot(page, "admin-375px")


async def assert_every_control_is_named(page: Any) -> None:
    """Every visible control has a name a screen reader reads."""
    unnamed = await page.evaluate(
        """[...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.offsetParent !== null)
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.id || e.outerHTML)"""
    )
    assert unnamed == []


PIPELINES = {
    "draft-then-polish": {
        "steps": [
            {"name": "draft", "prompt": "Draft: {{ input.topic }}"},
            {"name": "polish", "prompt": "Polish: {{ steps.draft }}"},
        ]
    }
}
# Workers that notice a cancel within a fraction of a second, so the page's changes show quickly.
FAST_JOBS = {"job_poll_s": 60, "job_heartbeat_s": 0.2, "job_lease_s": 2.0, "job_retry_backoff_s": 0.01}


def job_row(page: Any, job_id: str) -> Any:
    return page.locator(f'#jobs-rows tr[data-job-id="{job_id}"]')


async def test_the_jobs_page_follows_jobs_cancels_and_resumes_a_pipeline_run(
    tmp_path: Path, browser: Any
) -> None:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        generation_timeout_s=60,
        registry=scripted_registry("scripted", pipelines=PIPELINES),
        **FAST_JOBS,
    ) as mesh:
        generate = "/api/v1/ai/generate"
        slow = (await mesh.client.post(generate, json={"prompt": "slow 400", "async": True})).json()["job_id"]
        page = await open_console(browser, mesh, "#/jobs")
        await expect(page.get_by_role("heading", name="Jobs and pipelines")).to_be_visible()
        await expect(job_row(page, slow).locator("[data-status]")).to_have_text("Running")
        # a job submitted while the page is open appears, and its status changes to Succeeded
        quick = (await mesh.client.post(generate, json={"prompt": "quick one", "async": True})).json()[
            "job_id"
        ]
        await expect(job_row(page, quick).locator("[data-status]")).to_have_text("Succeeded")
        await expect(job_row(page, quick)).to_contain_text("echo: quick one")
        await expect(job_row(page, quick)).to_contain_text("Generation")
        # the kind and status filters ask the API for only those
        await page.get_by_label("Status").first.select_option("SUCCEEDED")
        await expect(page.locator("#jobs-rows tr[data-job-id]")).to_have_count(1)
        await page.get_by_label("Status").first.select_option("")
        await expect(page.locator("#jobs-rows tr[data-job-id]")).to_have_count(2)
        await screenshot(page, "jobs")
        await job_row(page, slow).get_by_role("button", name="Cancel").click()
        await expect(job_row(page, slow).locator("[data-status]")).to_have_text("Cancelled")
        await expect(job_row(page, slow)).to_contain_text("cancelled")  # its error code
        status = (await mesh.client.get(f"/api/v1/ai/status/{slow}")).json()
        assert status["status"] == "CANCELLED"
        await eventually(lambda: mesh.backend.calls[0].cancelled, timeout_s=5)
        assert mesh.backend.calls[0].cancelled  # the model stopped too
        # a run whose first step fails shows each step; Resume runs it again from that step
        mesh.backend.refuse = ProviderAuthFailed("key refused")
        started = await mesh.client.post(
            "/api/v1/pipelines/draft-then-polish/runs", json={"input": {"topic": "tea"}}
        )
        run_id = started.json()["run_id"]
        await page.get_by_role("button", name="Refresh").click()
        run = page.locator(f'#runs-list li[data-run-id="{run_id}"]')
        await expect(run.locator(".run-head [data-status]")).to_have_text("Failed")
        await expect(run.locator('[data-step="draft"] [data-status]')).to_have_text("Failed")
        await expect(run.locator('[data-step="draft"] .error-code')).to_have_text("upstream_auth_failed")
        await expect(run.locator('[data-step="polish"] [data-status]')).to_have_text("Pending")
        await expect(run.locator(".progress-text")).to_have_text("0 of 2 steps done")
        mesh.backend.refuse = None
        await run.get_by_role("button", name="Resume").click()
        await expect(run.locator(".run-head [data-status]")).to_have_text("Succeeded")
        await expect(run.locator(".progress-text")).to_have_text("2 of 2 steps done")
        await expect(run.locator(".run-output")).to_have_text("echo: Polish: echo: Draft: tea")
        await screenshot(page, "jobs-pipeline")
        # Japanese labels, dates per locale, and the page at 375 px
        await page.get_by_label("Language").select_option("ja")
        await expect(run.locator(".run-head [data-status]")).to_have_text("成功")
        await expect(run.locator("time").first).to_have_text(re.compile(r"\d{4}/\d{1,2}/\d{1,2}"))
        await page.set_viewport_size({"width": 375, "height": 800})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.outside == [] and page.page_errors == []


async def test_the_jobs_page_shows_a_batchs_progress_and_cancels_it(tmp_path: Path, browser: Any) -> None:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 's.db'}", generation_timeout_s=60, job_concurrency=2, **FAST_JOBS
    ) as mesh:
        lines = "".join(
            json.dumps(
                {
                    "custom_id": f"line-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "scripted", "messages": [{"role": "user", "content": "slow 4"}]},
                }
            )
            + "\n"
            for i in range(40)
        )
        uploaded = await mesh.client.post(
            "/v1/files", files={"file": ("lines.jsonl", lines.encode())}, data={"purpose": "batch"}
        )
        assert uploaded.status_code == 200, uploaded.text
        created = await mesh.client.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        batch_id = created.json()["id"]
        page = await open_console(browser, mesh, "#/jobs")
        item = page.locator(f'#batches-list li[data-batch-id="{batch_id}"]')
        await expect(item.locator("[data-status]")).to_have_text("In progress")
        # the progress follows the lines as they are answered
        await expect(item.locator(".progress-text")).to_have_text(
            re.compile(r"^[1-9]\d* answered, 0 failed, of 40$")
        )
        await item.get_by_role("button", name="Cancel").click()
        await expect(item.locator("[data-status]")).to_have_text("Cancelled")
        await expect(item.locator(".batch-files")).to_contain_text(f"file-{batch_id}-errors")
        answered = (await mesh.client.get(f"/v1/batches/{batch_id}")).json()["request_counts"]["completed"]
        assert 0 < answered < 40
        await expect(item.locator(".progress-text")).to_have_text(f"{answered} answered, 0 failed, of 40")
        await page.get_by_label("Language").select_option("ja")
        await expect(item.locator("[data-status]")).to_have_text("取り消し済み")
        await expect(item.locator(".progress-text")).to_have_text(f"40 件中 {answered} 件応答、0 件失敗")
        assert page.outside == [] and page.page_errors == []


async def test_the_models_page_shows_each_models_state_and_recent_work(mesh: Gateway, browser: Any) -> None:
    page = await open_console(browser, mesh)
    await send(page, "hello there")
    await expect(last_answer(page).locator(".content")).to_have_text("echo: hello there")
    await page.get_by_role("link", name="Models").click()
    await expect(page.get_by_role("heading", name="Models and pools")).to_be_visible()
    row = page.locator('#models-rows tr[data-model="scripted"]')
    await expect(row.locator('[data-cell="loaded"]')).to_have_text("Loaded")
    await expect(row.locator('[data-cell="pool"]')).to_have_text("Reachable")
    await expect(row.locator('[data-cell="generations"]')).to_have_text("1")
    await expect(row.locator('[data-cell="failures"]')).to_have_text("0")
    await expect(row.locator('[data-cell="running"]')).to_have_text("0")
    await expect(row.locator('[data-cell="ttft"]')).to_contain_text("ms")
    await expect(page.locator('#routes-list li[data-route="default"]')).to_have_text(
        "default default: scripted"
    )
    # a generation running now shows while the page refreshes itself
    slow = await mesh.client.post("/api/v1/ai/generate", json={"prompt": "slow 100", "async": True})
    assert slow.status_code == 202
    await expect(row.locator('[data-cell="running"]')).to_have_text("1")
    await expect(row.locator('[data-cell="generations"]')).to_have_text("2")
    await screenshot(page, "models")
    await page.get_by_label("Language").select_option("ja")
    await expect(row.locator('[data-cell="loaded"]')).to_have_text("読み込み済み")
    await page.set_viewport_size({"width": 375, "height": 800})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.outside == [] and page.page_errors == []


async def test_admin_creates_a_key_that_works_and_publishes_a_template_that_runs(
    tmp_path: Path, browser: Any
) -> None:
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", gateway_settings=settings) as mesh:
        page = await open_console(browser, mesh, "#/admin")
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()  # the templates list needs an API key: none yet
        await dialog.get_by_role("button", name="Cancel").click()
        keys = page.locator("#keys-status")
        await expect(keys.locator(".error-code")).to_have_text("invalid_admin_token")
        await page.get_by_label("Admin token (GATEWAY_ADMIN_TOKEN)").fill(ADMIN_TOKEN)
        await page.get_by_role("button", name="Use this token").click()
        await expect(page.locator("#admin-token-state")).to_have_text("An admin token is set for this tab.")
        # create a key with limits; its secret is shown once, and it works
        await page.get_by_label("Name", exact=True).fill("front end")
        await page.get_by_label("Requests per minute").fill("120")
        await page.get_by_role("button", name="Create key").click()
        secret = await page.locator("#new-key-secret").text_content()
        assert secret and secret.startswith("lmk_")
        row = page.locator("#keys-rows tr").filter(has_text="front end")
        await expect(row.locator('[data-cell="state"]')).to_have_text("Active")
        await expect(row).to_contain_text("120")
        works = await mesh.client.get("/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert works.status_code == 200
        assert (
            "admin"
            not in (await mesh.client.get("/admin/v1/api-keys", headers=ADMIN)).json()["keys"][0]["scopes"]
        )
        await screenshot(page, "admin")
        # the console itself uses that key for the public API
        await page.get_by_role("button", name="API key").click()
        await dialog.get_by_label("Key").fill(secret)
        await dialog.get_by_role("button", name="Use this key").click()
        await expect(page.locator("#tpl-list")).to_contain_text("No templates yet.")
        # a template: created, its first version written in the editor as a draft, then published
        await page.get_by_label("Template name").fill("checkup")
        await page.get_by_role("button", name="Create template").click()
        await expect(page.get_by_role("heading", name="First version")).to_be_visible()
        await page.get_by_label("System prompt").fill("You are a triage nurse.")
        await page.get_by_label("User prompt template").fill(
            "{% for a in answers %}{{ a.label }}{% if a.value %} ({{ a.value }}){% endif %}; {% endfor %}"
        )
        await page.get_by_label("Max tokens").fill("40")
        await page.get_by_label("Temperature").fill("0")
        await page.get_by_label("Options").fill("fever | Fever\ncough | Cough")
        await page.get_by_role("button", name="Save as new draft").click()
        version = page.locator('#tpl-versions li[data-version="1"]')
        await expect(version.locator("[data-status]")).to_have_text("Draft")
        await version.get_by_role("button", name="Publish version 1").click()
        await expect(version.locator("[data-status]")).to_have_text("Published")
        # editing makes the next draft from it; the published version stays as written
        await page.get_by_label("System prompt").fill("You are a careful triage nurse.")
        await page.get_by_role("button", name="Save as new draft").click()
        await expect(page.locator('#tpl-versions li[data-version="2"] [data-status]')).to_have_text("Draft")
        await expect(page.get_by_role("heading", name="Editing from version 2")).to_be_visible()
        # a draft is saved in place
        await page.get_by_label("System prompt").fill("You are a very careful triage nurse.")
        await page.evaluate("document.getElementById('tpl-saved').remove()")
        await page.get_by_role("button", name="Save this draft").click()
        await expect(page.locator("#tpl-saved")).to_have_text("Version 2 saved.")
        await expect(page.locator("#tpl-versions li")).to_have_count(2)
        await screenshot(page, "admin-templates")
        stored = (
            await mesh.client.get("/api/v1/templates/checkup", headers={"Authorization": f"Bearer {secret}"})
        ).json()
        assert [(v["number"], v["status"], v["system_prompt"]) for v in stored["versions"]] == [
            (1, "PUBLISHED", "You are a triage nurse."),
            (2, "DRAFT", "You are a very careful triage nurse."),
        ]
        assert stored["versions"][0]["llm_options"] == {
            "model": "default",
            "max_tokens": 40,
            "temperature": 0.0,
            "top_p": None,
            "seed": None,
            "stop": None,
            "knowledge_bases": None,
            "json_schema": None,
        }
        # the published version runs as a session
        await page.get_by_role("link", name="Sessions").click()
        await expect(page.get_by_role("heading", name="Sessions", exact=True)).to_be_visible()
        await load_template(page, "checkup")
        await page.get_by_label("Fever", exact=True).check()
        await page.get_by_role("button", name="Run").click()
        await expect(page.locator("#result-title")).to_have_text("Result")
        await expect(page.locator("#result-text")).to_have_text("echo: Fever;")
        # revoked from the page, the key stops working
        await page.get_by_role("link", name="Admin").click()
        await page.get_by_role("button", name="Revoke key front end").click()
        await expect(row.locator('[data-cell="state"]')).to_contain_text("Revoked")
        refused = await mesh.client.get("/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 401
        assert page.outside == [] and page.page_errors == []


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
async def test_the_api_docs_render_offline(mesh: Gateway, browser: Any, page_path: str) -> None:
    page = await open_console(browser, mesh)
    await page.goto(str(mesh.client.base_url).rstrip("/") + page_path)
    await expect(page.get_by_text("LLM Mesh", exact=False).first).to_be_visible()
    await expect(page.get_by_text("/api/v1/ai/generate").first).to_be_attached()
    assert page.outside == []


async def test_a_newcomers_chat_session_and_job_on_the_real_model(
    tmp_path: Path, model_path: Path, browser: Any
) -> None:
    model = "gemma-3-270m"
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 1024}
    registry = parse_registry(
        {
            "models": {"scripted": {"backend": "tests.support.fakes:ScriptedBackend"}, model: gemma},
            "routes": {"default": [{"model": model}]},
        }
    )
    backend = create_backend(model, registry.models[model], InferenceSettings(port=0))
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=60, registry=registry, models=[backend]
    ) as mesh:
        page = await open_console(browser, mesh)
        await page.get_by_label("API", exact=True).select_option("generate")
        await page.get_by_label("Max tokens").fill("16")
        await page.get_by_label("Temperature").fill("0")
        await send(page, "The capital of France is")
        meta = last_answer(page).locator(".meta")
        await expect(meta.locator('[data-figure="model"] .value')).to_have_text(model, timeout=60_000)
        await expect(meta.locator('[data-figure="route"] .value')).to_have_text("default")
        text = await last_answer(page).locator(".content").text_content()
        assert text and text.strip()
        completion = int(await meta.locator('[data-figure="completion_tokens"] .value').text_content() or 0)
        assert 1 <= completion <= 16
        await expect(meta.locator('[data-figure="speed"]')).to_contain_text("tokens/s")
        # the models page shows the packaged model, loaded, with the generation it just made
        await page.get_by_role("link", name="Models").click()
        row = page.locator(f'#models-rows tr[data-model="{model}"]')
        await expect(row.locator('[data-cell="loaded"]')).to_have_text("Loaded")
        await expect(row).to_contain_text("llama_cpp")
        await expect(row.locator('[data-cell="generations"]')).to_have_text("1")
        speed = float(await row.locator('[data-cell="speed"]').text_content() or 0)
        assert speed > 0
        # a newcomer's first session: the example questionnaire, run as a job, then regenerated
        await page.get_by_role("link", name="Sessions").click()
        await page.get_by_role("button", name="Create the example questionnaire").click()
        await page.get_by_label("I enjoy trying new things", exact=True).check()
        await page.get_by_label("Run as a background job", exact=False).check()
        await page.get_by_role("button", name="Run").click()
        await expect(page.locator("#result-title")).to_have_text("Result", timeout=60_000)
        await expect(page.locator("#result-job")).to_contain_text("Succeeded")
        result = page.locator("#result-text")
        first = await result.get_attribute("data-created-at")
        assert (await result.text_content() or "").strip()
        await page.get_by_role("button", name="Regenerate").click()
        await expect(result).not_to_have_attribute("data-created-at", first or "", timeout=60_000)
        await expect(page.locator("#result-origin")).to_have_text("New result")
        await page.get_by_role("link", name="See it on the Jobs page").click()
        await expect(page.locator("#jobs-rows tr[data-job-id]")).to_have_count(2)
        await expect(page.locator("#jobs-rows [data-status]")).to_have_text(["Succeeded", "Succeeded"])


async def test_the_page_names_the_api_prefix_it_is_served_under(tmp_path: Path) -> None:
    settings = {"api_prefix": "/custom"}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", gateway_settings=settings) as mesh:
        page = await mesh.client.get("/")
        assert '<meta name="llmmesh-api-prefix" content="/custom">' in page.text
        assert (await mesh.client.get("/custom/models")).status_code == 200
