"""The admin token tests run the gateway with, and API keys made through the admin API."""

from __future__ import annotations

from tests.support.mesh import Gateway

ADMIN_TOKEN = "admin-secret-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def create_key(gateway: Gateway, name: str = "app", **limits: int) -> str:
    response = await gateway.client.post("/admin/v1/api-keys", json={"name": name, **limits}, headers=ADMIN)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key
