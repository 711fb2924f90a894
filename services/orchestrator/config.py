"""Orchestrator settings (env prefix ORCHESTRATOR_; addresses of other services unprefixed)."""

from __future__ import annotations

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import (
    PIPELINE_STALL_S,
    InferenceAddr,
    RegistryPath,
    ServiceSettings,
    StoreAddr,
    env_alias,
)


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_")

    port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9401, ge=0, le=65535)
    inference_addr: InferenceAddr
    store_addr: StoreAddr
    # The model registry with the routes.
    registry_path: RegistryPath
    # A generation that has not finished after this many seconds, all tiers and retries together,
    # fails with DEADLINE_EXCEEDED.
    generation_timeout_s: float = Field(default=60.0, gt=0)
    # Attempts per tier for a transient failure (throttling, provider 5xx, timeout, connection lost).
    retry_attempts: int = Field(default=3, ge=1, le=10)
    # Backoff before retry n is retry_backoff_s * 2**(n-1), at most retry_max_backoff_s, with jitter.
    retry_backoff_s: float = Field(default=0.25, ge=0)
    retry_max_backoff_s: float = Field(default=2.0, ge=0)

    # Jobs this replica runs at once; 0 runs none (the replica only serves requests).
    job_concurrency: int = Field(default=4, ge=0, le=1024)
    # The share of job_concurrency that lines of Batch API batches may take at once (at least one):
    # the rest stays for interactive jobs, and the inference slots a batch leaves for live requests.
    job_batch_share: float = Field(default=0.5, gt=0, le=1)
    # A claimed job is this replica's for job_lease_s; it renews every job_heartbeat_s, so a
    # replica that dies loses its jobs to another after at most job_lease_s.
    job_lease_s: float = Field(default=30.0, gt=0)
    job_heartbeat_s: float = Field(default=5.0, gt=0)
    # Workers are woken by the store when jobs are queued, and sleep until the next job the store
    # says falls due (a retry's backoff, an expired lease); this is the longest they sleep between
    # claims all the same, a backstop for a wake-up that never came.
    job_poll_s: float = Field(default=30.0, gt=0)
    # On SIGTERM, running jobs get this long to finish; the rest go back to the queue.
    job_shutdown_grace_s: float = Field(default=20.0, ge=0)
    # Backoff before a failed job's attempt n+1: job_retry_backoff_s * 2**(n-1), at most
    # job_retry_max_backoff_s, with jitter.
    job_retry_backoff_s: float = Field(default=1.0, ge=0)
    job_retry_max_backoff_s: float = Field(default=60.0, ge=0)
    # A pipeline run RUNNING with no step finished for this long is reported as stalled (PIPELINE_STALL_S
    # is read by the store too, for its stalled-runs gauge).
    pipeline_stall_s: float = Field(
        default=PIPELINE_STALL_S,
        gt=0,
        validation_alias=env_alias("PIPELINE_STALL_S", "pipeline_stall_s", "ORCHESTRATOR_PIPELINE_STALL_S"),
    )
    # Webhook deliveries time out after this long (and are retried as jobs).
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Networks webhooks may be posted to although they are not public (loopback, private, ...), e.g.
    # '["10.20.0.0/16"]' for receivers inside the cluster; empty: public addresses only.
    webhook_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    # Signs webhook bodies (X-LLM-Mesh-Signature: sha256=<hex HMAC>) when set.
    webhook_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> OrchestratorSettings:
        if self.job_heartbeat_s >= self.job_lease_s:
            raise ValueError(
                "job_heartbeat_s must be shorter than job_lease_s, or leases lapse between renewals"
            )
        return self
