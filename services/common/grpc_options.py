"""Channel and server options, set explicitly so their values are deliberate, not inherited."""

from __future__ import annotations

import grpc

# Prompts and whole generations travel in one message; 16 MiB leaves room for long contexts
# while still refusing a runaway payload (the default is 4 MiB for receive).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Accept client keepalive pings as often as every 10 s so idle streams to a slow model survive
    # NATs and load balancers without the server answering with GOAWAY(too_many_pings).
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Let connections be pinged while no stream is open (channels sit idle between requests).
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC turns SO_REUSEPORT on by default on Linux, so a second server on a taken port binds silently
    # and the kernel splits connections between the two; off, a taken port fails at start.
    ("grpc.so_reuseport", 0),
]

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Ping every 30 s so a peer that vanished (pod killed, node lost) is noticed in seconds,
    # not after the kernel's TCP timeout; 30 s is above the server's 10 s minimum.
    ("grpc.keepalive_time_ms", 30_000),
    # A ping unanswered for 10 s marks the connection dead and triggers a reconnect.
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # While a peer is unreachable, calls fail at once until the next reconnect attempt. gRPC's default
    # backoff grows to 120 s, so a peer that restarted (a pod rescheduled, a service started after its
    # caller) could be refused for minutes; retry from 0.2 s up to every 5 s instead.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def create_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to another mesh service (TLS terminates at the cluster's mesh/ingress).
    What every call carries (request id, project, trace context, the service token) and its client
    metrics are added by the typed client making the call (services/common/client.py)."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
