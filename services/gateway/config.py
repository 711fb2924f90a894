"""Gateway settings (env prefix GATEWAY_; addresses of other services unprefixed)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import (
    InferenceAddr,
    OrchestratorAddr,
    RegistryPath,
    ServiceSettings,
    StoreAddr,
)

# The request headers the official SDKs (openai, anthropic) send when a web page calls the API.
BROWSER_SDK_HEADERS = (
    "X-Stainless-Arch",
    "X-Stainless-Async",
    "X-Stainless-Helper",
    "X-Stainless-Lang",
    "X-Stainless-OS",
    "X-Stainless-Package-Version",
    "X-Stainless-Read-Timeout",
    "X-Stainless-Retry-Count",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Timeout",
    "OpenAI-Organization",
    "OpenAI-Project",
    "X-Api-Key",
    "Anthropic-Version",
    "Anthropic-Beta",
    "Anthropic-Dangerous-Direct-Browser-Access",
)


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    orchestrator_addr: OrchestratorAddr
    # Templates and sessions are managed on the store directly; /readyz checks it too.
    store_addr: StoreAddr
    # Only /readyz talks to the inference service, to report whether the whole mesh can serve.
    inference_addr: InferenceAddr
    # The registry the orchestrator reads (unset: the built-in one): /readyz probes each of its pools.
    registry_path: RegistryPath
    # Backstop for a call to the orchestrator or the store that never answers (a stream included);
    # the orchestrator's own generation timeout (60 s by default) normally fires first.
    request_timeout_s: float = Field(default=300.0, gt=0)
    # Seconds between SSE comment pings that keep idle proxies from closing a slow stream.
    sse_ping_s: float = Field(default=15.0, gt=0)

    # API keys: off for local development (the embedded default); on in the Kubernetes manifests.
    auth_enabled: bool = False
    # Bearer token of the admin API (/admin/v1/...); unset disables it. Only from the environment.
    admin_token: SecretStr | None = None
    # Seconds a verified key is trusted before the store is asked again (a revoke made through
    # this gateway takes effect at once; through another replica, within this time).
    api_key_cache_s: float = Field(default=10.0, ge=0)
    # Limits of a key whose own are 0; 0 here means unlimited.
    default_rpm: int = Field(default=600, ge=0)
    default_tpm: int = Field(default=200_000, ge=0)
    # Shared limits: with a Redis URL (e.g. redis://redis:6379/0; it may hold a password, so it is
    # a secret) every replica's keys, tokens and generation slots count together; unset, each gateway
    # keeps its own. Keys start with redis_prefix, so meshes can share one Redis.
    redis_url: SecretStr | None = None
    redis_prefix: str = Field(default="llmmesh", min_length=1, max_length=64)
    # What a limit decision does when Redis does not answer within redis_timeout_s: "open" admits
    # (limits then hold per replica only), "closed" refuses with 503 limiter_unavailable.
    redis_failure: Literal["open", "closed"] = "open"
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # Invalid API keys one client address may present per minute; past that it waits (429), and the
    # store is not asked. 0: unlimited.
    invalid_key_rpm: int = Field(default=30, ge=0)
    # Generations (requests and WebSocket turns) in flight at once; more are refused with 503.
    max_concurrent_requests: int = Field(default=64, ge=1)
    # Larger request bodies are refused with 413 before they are read.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Uploads (POST /v1/files) may be this large; the store keeps files of at most 8 MiB.
    max_upload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=8 * 1024 * 1024)
    # A request's headers: at most this many bytes (431 beyond), all in within header_timeout_s of its
    # first byte (408 otherwise, as for a connection that sends nothing); each read of its body within
    # body_timeout_s (408). Slow or endless requests cannot tie the gateway up.
    max_header_bytes: int = Field(default=32_768, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Seconds between WebSocket ping frames (the client's pongs show the connection is alive); also
    # Socket.IO's ping interval.
    ws_ping_s: float = Field(default=20.0, gt=0)
    # Where the mesh's own REST API (and its WebSocket) is served: /api/v1/ai/generate by default,
    # e.g. /custom/ai/generate with "/custom"; "" serves it at the root. The OpenAI API stays at /v1,
    # the admin API at /admin/v1, Socket.IO at /socket.io, the docs at /docs and /redoc, the console's
    # assets at /console.
    api_prefix: str = Field(default="/api/v1", max_length=64, pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    # Web origins (e.g. ["https://app.example.com"], or ["*"]) whose pages may open a Socket.IO
    # connection; empty: the gateway's own origin only.
    socketio_cors_origins: list[str] = Field(default_factory=list, max_length=64)
    # CORS for the HTTP API, so a web front end on another origin can call it: the origins whose pages
    # may (e.g. ["http://localhost:5173"], or ["*"]); empty: none, CORS is off. Methods and headers a
    # preflight may ask for; credentials: whether the browser may send cookies or HTTP auth along (the
    # spec forbids that with "*", so that pair is refused). An API key in the Authorization header is
    # a header, not a credential in this sense: it needs no allow_credentials.
    cors_allow_origins: list[str] = Field(default_factory=list, max_length=64)
    cors_allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "DELETE"], min_length=1, max_length=16
    )
    cors_allow_headers: list[str] = Field(
        default_factory=lambda: [
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "X-Request-ID",
            "X-Conversation-ID",
            # what the official SDKs send from a page: openai's and anthropic's (Stainless) platform
            # headers, Anthropic's key and version headers, OpenAI's organization and project
            *BROWSER_SDK_HEADERS,
        ],
        max_length=64,
    )
    cors_allow_credentials: bool = False
    # Seconds a browser may cache a preflight's answer.
    cors_max_age_s: int = Field(default=600, ge=0, le=86_400)

    @field_validator("api_prefix")
    @classmethod
    def _prefix_of_our_own(cls, prefix: str) -> str:
        for taken in ("/v1", "/admin", "/socket.io", "/docs", "/redoc", "/console"):
            if prefix == taken or prefix.startswith(f"{taken}/"):
                raise ValueError(f"{taken} belongs to another API of the gateway: choose another prefix")
        # Ollama's API is /api/… (its errors have its shape there); only /api/v1 is ours beside it.
        if (prefix == "/api" or prefix.startswith("/api/")) and not (
            prefix == "/api/v1" or prefix.startswith("/api/v1/")
        ):
            raise ValueError(
                "/api belongs to the Ollama API of the gateway (but /api/v1): choose another prefix"
            )
        return prefix

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins_only(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f'{origin!r} is not an origin: scheme://host[:port], no path, or "*"')
        return origins

    @model_validator(mode="after")
    def _no_credentials_with_any_origin(self) -> GatewaySettings:
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                'GATEWAY_CORS_ALLOW_CREDENTIALS needs the origins listed: the CORS spec forbids "*" with credentials'
            )
        return self
