"""A published template version and a session with answers, made over the REST API (under the
gateway's GATEWAY_API_PREFIX), for tests of session runs."""

from __future__ import annotations

from typing import Any

from tests.support.mesh import Gateway

SYSTEM = "You are a careful assistant. Summarise the patient's answers."

USER_TEMPLATE = (
    "Answers:{% for a in answers %}\n* {{ a.label }}{% if a.value %} ({{ a.value }}){% endif %}{% endfor %}"
)

OPTIONS = [
    {"key": "fever", "label": "Fever"},
    {"key": "cough", "label": "Cough"},
    {"key": "note", "label": "Note"},
]

LLM_OPTIONS = {"model": "scripted", "max_tokens": 50, "temperature": 0}


def api(mesh: Gateway) -> str:
    """Where the mesh serves its REST API."""
    return mesh.settings.api_prefix if mesh.settings is not None else "/api/v1"


async def make_version(
    mesh: Gateway, template: str = "triage", publish: bool = True, **fields: Any
) -> dict[str, Any]:
    client, prefix = mesh.client, api(mesh)
    if (await client.get(f"{prefix}/templates/{template}")).status_code == 404:
        assert (await client.post(f"{prefix}/templates", json={"name": template})).status_code == 201
    body = {
        "system_prompt": SYSTEM,
        "user_prompt_template": USER_TEMPLATE,
        "llm_options": LLM_OPTIONS,
        "options": OPTIONS,
    }
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post(f"{prefix}/templates/{template}/versions", json=body)
    assert response.status_code == 201, response.text
    version = response.json()
    if publish:
        response = await client.post(f"{prefix}/templates/{template}/versions/{version['number']}/publish")
        assert response.status_code == 200, response.text
        version = response.json()
    return dict(version)


async def make_session(
    mesh: Gateway, answers: list[dict[str, str]] | None, template: str = "triage", version: int | None = None
) -> str:
    body: dict[str, Any] = {"template": template}
    if version:
        body["version"] = version
    response = await mesh.client.post(f"{api(mesh)}/sessions", json=body)
    assert response.status_code == 201, response.text
    code = str(response.json()["session_code"])
    if answers is not None:
        response = await mesh.client.put(f"{api(mesh)}/sessions/{code}/answers", json={"answers": answers})
        assert response.status_code == 200, response.text
    return code


ANSWERS = [{"option": "fever", "value": "39.2 C"}, {"option": "cough"}]

RENDERED = "Answers:\n* Fever (39.2 C)\n* Cough"
