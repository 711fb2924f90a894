"""The inference pool's metrics: model load time, loaded models, and requests running and waiting per
model — also under the names the Kubernetes Gateway API Inference Extension reads
(`vllm:num_requests_running`, `vllm:num_requests_waiting`), so inference-aware load balancers route
to llama.cpp pools unchanged. A vLLM engine publishes those names itself, so its models are left out
of ours, and `vllm:kv_cache_usage_perc` (the share of a llama.cpp engine's KV cache the running
sequences fill). The gauges are read from the pools' state at scrape time: nothing is paid per
request. Prompt tokens an engine reused from its cache instead of evaluating count in
`llmmesh_inference_prompt_tokens_cached_total`."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from services.inference.models import ModelHost

MODEL_LOAD_SECONDS = Histogram(
    "llmmesh_inference_model_load_seconds",
    "Time to load a model (weights into memory, or a provider client built).",
    ["model"],
    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

PROMPT_TOKENS_CACHED = Counter(
    "llmmesh_inference_prompt_tokens_cached",
    "Prompt tokens a local engine read from a slot's KV cache instead of evaluating (prefix reuse).",
    ["model"],
)
PROMPT_TOKENS = Counter(
    "llmmesh_inference_prompt_tokens", "Prompt tokens of generations on local engines.", ["model"]
)


class PoolCollector(Collector):
    """Gauges of every model host in this process, summed by model name."""

    def __init__(self) -> None:
        self._hosts: weakref.WeakSet[ModelHost] = weakref.WeakSet()

    def track(self, host: ModelHost) -> None:
        self._hosts.add(host)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        loaded = GaugeMetricFamily(
            "llmmesh_inference_model_loaded",
            "1 while the model is loaded and ready.",
            labels=["model", "backend"],
        )
        running = GaugeMetricFamily(
            "llmmesh_inference_requests_running", "Requests the model is working on now.", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "llmmesh_inference_requests_waiting",
            "Requests queued for the model (llama.cpp serves one at a time, first come first served).",
            labels=["model"],
        )
        vllm_running = GaugeMetricFamily(
            "vllm:num_requests_running",
            "Requests running on the model (llama.cpp pools).",
            labels=["model_name"],
        )
        vllm_waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting",
            "Requests waiting for the model (llama.cpp pools).",
            labels=["model_name"],
        )
        slots = GaugeMetricFamily(
            "llmmesh_inference_slots", "Sequence slots of the model's engine.", labels=["model"]
        )
        slots_busy = GaugeMetricFamily(
            "llmmesh_inference_slots_busy", "Slots decoding a sequence now.", labels=["model"]
        )
        kv_usage = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc",
            "Share of the KV cache the running sequences fill, 0 to 1 (llama.cpp pools).",
            labels=["model_name"],
        )
        totals: dict[tuple[str, str], list[int]] = {}
        engines: dict[str, list[float]] = {}
        for host in list(self._hosts):
            for name, backend in host.backends.items():
                gauges = backend.engine_gauges() if backend.loaded else {}
                if gauges:
                    engine = engines.setdefault(name, [0, 0, 0.0])
                    engine[0] += gauges["slots"]
                    engine[1] += gauges["slots_busy"]
                    engine[2] = max(engine[2], gauges["kv_cache_usage"])
                runs, waits = host.requests(name)
                total = totals.setdefault((name, backend.kind), [0, 0, 0])
                total[0] = max(total[0], int(backend.loaded))
                total[1] += runs
                total[2] += waits
        for (name, kind), (is_loaded, runs, waits) in sorted(totals.items()):
            loaded.add_metric([name, kind], is_loaded)
            running.add_metric([name], runs)
            waiting.add_metric([name], waits)
            if kind != "vllm":
                vllm_running.add_metric([name], runs)
                vllm_waiting.add_metric([name], waits)
        for name, (slot_count, busy, usage) in sorted(engines.items()):
            slots.add_metric([name], slot_count)
            slots_busy.add_metric([name], busy)
            kv_usage.add_metric([name], usage)
        yield from (loaded, running, waiting, vllm_running, vllm_waiting, slots, slots_busy, kv_usage)


POOLS = PoolCollector()
REGISTRY.register(POOLS)
