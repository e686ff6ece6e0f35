"""Prometheus metrics (`GET /metrics`). Counters and histograms are updated as requests end
and as tokens stream; what describes the server's state (loaded models, queues, sequences,
restarts, MCP calls) is read from the runtime when scraped, so it can never drift."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from hearth.observe.record import RequestRecord

if TYPE_CHECKING:
    from hearth.mcp.manager import McpManager
    from hearth.models.manager import ModelManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ITL = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5)


class Metrics:
    """One registry per runtime (two apps in one process never share counters)."""

    def __init__(self, models: ModelManager, mcp: McpManager | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hearth_requests", "API requests by route and status.",
            ["api", "route", "method", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "hearth_request_duration_seconds", "Whole request time, a stream's to its end.",
            ["api", "route"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "hearth_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.cached_tokens = Counter(
            "hearth_prompt_tokens_cached", "Prompt tokens served from the KV or RAM cache.",
            ["model"], registry=r,
        )  # fmt: skip
        self.generated_tokens = Counter(
            "hearth_generated_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.draft_tokens = Counter(
            "hearth_speculative_draft_tokens", "Draft tokens proposed.", ["model"], registry=r
        )
        self.draft_accepted = Counter(
            "hearth_speculative_draft_tokens_accepted", "Draft tokens the model accepted.",
            ["model"], registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds", "From a request's arrival to its first token.",
            ["model"], buckets=_TTFT, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "hearth_inter_token_latency_seconds", "Between a stream's consecutive tokens.",
            ["model"], buckets=_ITL, registry=r,
        )  # fmt: skip
        r.register(_StateCollector(models, mcp))

    def request_done(self, record: RequestRecord, api: str, route: str, seconds: float) -> None:
        self.requests.labels(api, route, record.method, str(record.status)).inc()
        self.latency.labels(api, route).observe(seconds)
        model = record.model
        if model is None or record.prompt_tokens is None:
            return
        self.prompt_tokens.labels(model).inc(record.prompt_tokens)
        self.cached_tokens.labels(model).inc(record.cached_tokens or 0)
        self.generated_tokens.labels(model).inc(record.completion_tokens or 0)
        if record.draft_proposed:
            self.draft_tokens.labels(model).inc(record.draft_proposed)
            self.draft_accepted.labels(model).inc(record.draft_accepted)
        if record.ttft is not None:
            self.ttft.labels(model).observe(record.ttft)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, models: ModelManager, mcp: McpManager | None):
        self.models = models
        self.mcp = mcp

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("hearth_loaded_models", "Models loaded now.")
        memory = GaugeMetricFamily(
            "hearth_model_memory_bytes", "A loaded model's estimated memory.", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "hearth_queue_depth", "Requests waiting for a free sequence.", labels=["model"]
        )
        active = GaugeMetricFamily(
            "hearth_active_sequences", "Sequences busy with a prompt or generating.",
            labels=["model"],
        )  # fmt: skip
        load = GaugeMetricFamily(
            "hearth_model_load_seconds", "How long the model's last load took.",
            labels=["model"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "hearth_engine_restarts", "Engine crashes (each followed by a fresh engine).",
            labels=["model"],
        )  # fmt: skip
        up = GaugeMetricFamily(
            "hearth_upstream_up", "1 while an upstream base URL answers its health check.",
            labels=["model", "url"],
        )  # fmt: skip
        in_flight = GaugeMetricFamily(
            "hearth_upstream_requests_in_flight", "Requests open to an upstream base URL.",
            labels=["model", "url"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "hearth_upstream_errors", "Failed connections and broken streams per base URL.",
            labels=["model", "url"],
        )  # fmt: skip
        latency = SummaryMetricFamily(
            "hearth_upstream_latency_seconds",
            "From sending a request upstream to its response headers.",
            labels=["model", "url"],
        )
        models = self.models.loaded()
        loaded.add_metric([], len(models))
        for m in models:
            model_id = m.entry.id
            memory.add_metric([model_id], m.memory_bytes)
            try:
                status = m.engine.status()
            except Exception:  # a crashed or closing engine: no figures this scrape
                continue
            queued.add_metric([model_id], status.queued)
            busy = sum(1 for s in status.slots if s.state != "idle")
            active.add_metric([model_id], busy)
            for u in status.upstreams:
                labels = [model_id, u.url]
                up.add_metric(labels, 1 if u.up else 0)
                in_flight.add_metric(labels, u.in_flight)
                errors.add_metric(labels, u.errors)
                latency.add_metric(labels, u.requests, u.latency_seconds)
        for model_id, seconds in self.models.load_seconds.items():
            load.add_metric([model_id], seconds)
        for model_id, count in self.models.restarts.items():
            restarts.add_metric([model_id], count)
        yield from (loaded, memory, queued, active, load, restarts)
        yield from (up, in_flight, errors, latency)
        calls = CounterMetricFamily(
            "hearth_mcp_calls", "MCP tool calls by server and outcome.",
            labels=["server", "outcome"],
        )  # fmt: skip
        if self.mcp is not None:
            for (server, outcome), count in self.mcp.calls.items():
                calls.add_metric([server, outcome], count)
        yield calls
