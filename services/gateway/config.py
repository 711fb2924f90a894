"""Gateway settings (env prefix GATEWAY_; addresses of other services unprefixed)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings, env_alias


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = Field(default=8080, ge=0, le=65535)
    orchestrator_addr: str = Field(
        default="127.0.0.1:50051", validation_alias=env_alias("ORCHESTRATOR_ADDR", "orchestrator_addr")
    )
    # Templates and sessions are managed on the store directly; /readyz checks it too.
    store_addr: str = Field(default="127.0.0.1:50053", validation_alias=env_alias("STORE_ADDR", "store_addr"))
    # Only /readyz talks to the inference service, to report whether the whole mesh can serve.
    inference_addr: str = Field(
        default="127.0.0.1:50052", validation_alias=env_alias("INFERENCE_ADDR", "inference_addr")
    )
    # Backstop for a call to the orchestrator that never answers; the orchestrator's own
    # generation timeout (60 s by default) normally fires first.
    request_timeout_s: float = Field(default=300.0, gt=0)
    # Seconds between SSE comment pings that keep idle proxies from closing a slow stream.
    sse_ping_s: float = Field(default=15.0, gt=0)
