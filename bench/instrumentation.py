"""What the mesh's instrumentation costs on the hot path: one gRPC hop, measured bare and through the
shared instrumentation (the server interceptor and the typed clients' per-call bookkeeping: request
id, Prometheus metrics, and with tracing on, spans exported by a batch processor), on real sockets in
one process, rounds alternating so drift hits every variant alike.

Two RPC shapes: a unary call (the store's reads, a non-streamed generation) and a server stream of
32 messages (a streamed generation: one message per token).

    .venv/bin/python -m bench.instrumentation --publish   # writes docs/benchmarks/instrumentation.md

Without --publish (or --out DIR) the report goes to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.report import add_output_options, output_dir, percentile, write_report
from services.common import tracing
from services.common.grpc_options import CHANNEL_OPTIONS, SERVER_OPTIONS
from services.common.interceptor import ClientCall, MeshServerInterceptor
from services.common.request_id import bound_request_id

UNARY = "/llmmesh.bench.v1.Bench/Echo"
STREAM = "/llmmesh.bench.v1.Bench/Tokens"
TOKENS = 32


def _identity(data: bytes) -> bytes:
    return data


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _tokens(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(TOKENS):
        yield b"token"


def _handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "llmmesh.bench.v1.Bench",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo, request_deserializer=_identity, response_serializer=_identity
            ),
            "Tokens": grpc.unary_stream_rpc_method_handler(
                _tokens, request_deserializer=_identity, response_serializer=_identity
            ),
        },
    )


class Hop:
    """A server and a channel to it, with or without the mesh's interceptors on both ends."""

    def __init__(self, instrumented: bool) -> None:
        self.instrumented = instrumented

    async def __aenter__(self) -> Hop:
        interceptors = [MeshServerInterceptor()] if self.instrumented else []
        self.server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers([_handlers()])
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=CHANNEL_OPTIONS,
        )
        self.unary = self.channel.unary_unary(
            UNARY, request_serializer=_identity, response_deserializer=_identity
        )
        self.stream = self.channel.unary_stream(
            STREAM, request_serializer=_identity, response_deserializer=_identity
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.server.stop(None)

    async def call_unary(self) -> float:
        """One call, instrumented as the typed clients do it (services/common/client.py) or bare."""
        started = time.perf_counter()
        if self.instrumented:
            call = ClientCall(UNARY, None)
            await self.unary(b"ping", timeout=5, metadata=call.metadata())
            call.record(grpc.StatusCode.OK)
        else:
            await self.unary(b"ping", timeout=5)
        return time.perf_counter() - started

    async def call_stream(self) -> float:
        started = time.perf_counter()
        count = 0
        if self.instrumented:
            bookkeeping = ClientCall(STREAM, None)
            stream = self.stream(b"go", timeout=5, metadata=bookkeeping.metadata())
            bookkeeping.watch(stream)
        else:
            stream = self.stream(b"go", timeout=5)
        async for _ in stream:
            count += 1
        assert count == TOKENS
        return time.perf_counter() - started


class _DroppingExporter:
    """Receives every span batch and throws it away: the export path runs, nothing leaves the process."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _enable_tracing() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DroppingExporter()))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)


async def measure(rounds: int, calls: int) -> dict[str, dict[str, list[float]]]:
    variants = ("bare", "metrics", "metrics+tracing")
    results: dict[str, dict[str, list[float]]] = {v: {"unary": [], "stream": []} for v in variants}
    async with Hop(False) as bare, Hop(True) as instrumented:
        hops = {"bare": bare, "metrics": instrumented, "metrics+tracing": instrumented}
        for hop in (bare, instrumented):  # warm-up: connections, caches of label children
            for _ in range(200):
                await hop.call_unary()
                await hop.call_stream()
        for _ in range(rounds):
            for variant in variants:
                # the switch configure_tracing turns on; flipped here so the variants can alternate
                tracing._enabled = variant == "metrics+tracing"
                hop = hops[variant]
                with bound_request_id("bench"):
                    results[variant]["unary"].extend([await hop.call_unary() for _ in range(calls)])
                    results[variant]["stream"].extend([await hop.call_stream() for _ in range(calls)])
        tracing._enabled = False
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100, help="calls of each shape per variant per round")
    add_output_options(parser)
    args = parser.parse_args()
    _enable_tracing()
    results = asyncio.run(measure(args.rounds, args.calls))

    def row(variant: str, shape: str) -> str:
        samples = results[variant][shape]
        base = statistics.median(results["bare"][shape])
        median = statistics.median(samples)
        return (
            f"| {variant} | {shape} | {median * 1e6:.0f} | {percentile(samples, 0.99) * 1e6:.0f} "
            f"| {(median - base) * 1e6:+.0f} | {median / base:.2f}x |"
        )

    lines = [
        "# Instrumentation cost on the hot path",
        "",
        f"Command: `.venv/bin/python -m bench.instrumentation --rounds {args.rounds} --calls {args.calls}`",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, Python {sys.version.split()[0]}, "
        f"grpcio {grpc.__version__}. One process, real sockets on loopback; {args.rounds} rounds alternating "
        f"the variants, {args.calls} calls of each shape per variant per round, after 200 warm-up calls.",
        "",
        "- **bare**: no interceptor, no bookkeeping on either end.",
        "- **metrics**: the mesh's server interceptor and its clients' per-call bookkeeping "
        "(services/common/interceptor.ClientCall): request id in metadata, server and client "
        "gRPC metrics (started, handled by code, latency histogram, in flight). The interceptors' access log "
        "call is filtered out here by level (as with LOG_LEVEL=WARNING); at INFO each RPC also writes one "
        "JSON line, which this does not count. Request-id binding and the server interceptor predate the "
        "metrics, so this row is an upper bound on what metrics added.",
        "- **metrics+tracing**: the same, plus a server and a client span per RPC, W3C context in metadata and "
        "spans handed to a batch processor (its exporter drops them, so no network cost is counted).",
        f"- **unary**: one request, one response. **stream**: one request, {TOKENS} responses (a streamed "
        f"generation of {TOKENS} tokens).",
        "",
        "| variant | shape | median µs | p99 µs | added µs (median) | ratio |",
        "|---|---|---:|---:|---:|---:|",
        *(
            row(variant, shape)
            for shape in ("unary", "stream")
            for variant in ("bare", "metrics", "metrics+tracing")
        ),
        "",
        "Per hop. A generation through the whole mesh crosses two gRPC hops (gateway → orchestrator → "
        "inference); what the gateway adds per HTTP request (one counter, one histogram, one gauge) is "
        "not in these rows. The orchestrator's per-generation meter (outcome, latency, tokens: a few "
        "cached children) and per-token work (one branch per delta) are not either; they are below "
        "what this harness resolves.",
    ]
    write_report(output_dir(args) / "instrumentation.md", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
