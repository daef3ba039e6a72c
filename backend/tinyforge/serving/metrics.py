"""Prometheus metrics of the inference service (served at GET /metrics).

Each app gets its own CollectorRegistry, so two servers in one process (tests, a bundle inside
a worker) never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter for no use here.
disable_created_metrics()

# The parts of a model's memory that are its own: its full weights, or its adapter on a shared
# base. The other parts (shared_base, kv_cache) belong to the runtime it shares with the other
# models on that base, so ten adapters of one base hold one base and one KV cache, not ten.
OWN_MEMORY_PARTS = frozenset({"weights", "adapter"})


def split_memory(parts: dict[str, int]) -> tuple[int, int]:
    """(own bytes, shared bytes) of a model's memory parts."""
    own = sum(value for part, value in parts.items() if part in OWN_MEMORY_PARTS)
    return own, sum(parts.values()) - own


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tinyforge_serving_requests", "Requests answered, by model, endpoint and HTTP status "
                                "(499: the client went away first).", ["model", "endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("tinyforge_serving_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.prompt_tokens_cached = Counter("tinyforge_serving_prompt_tokens_cached", "Prompt tokens whose KV came from "
                                            "the prefix cache instead of being computed (counted in prompt_tokens too).",
                                            ["model"], registry=r)
        self.completion_tokens = Counter("tinyforge_serving_completion_tokens", "Tokens generated.", ["model"], registry=r)
        self.ttft = Histogram("tinyforge_serving_time_to_first_token_seconds", "From arrival to the first generated token.",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.latency = Histogram("tinyforge_serving_request_duration_seconds", "From arrival to the last byte of the answer.",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.running = Gauge("tinyforge_serving_requests_running", "Requests being generated now.", ["model"], registry=r)
        self.waiting = Gauge("tinyforge_serving_requests_waiting", "Requests queued for a batch slot.", ["model"], registry=r)
        self.rejected = Counter("tinyforge_serving_rejected_requests", "Requests refused for load (queue_full) or "
                                "stopped at the per-request timeout.", ["model", "reason"], registry=r)
        self.memory = Gauge("tinyforge_serving_model_memory_bytes", "Memory per model and part: its own weights "
                            "(part adapter or weights), and the runtime it runs on (shared_base, kv_cache), which "
                            "every model on that runtime reports again: sum only the own parts across models.",
                            ["model", "part"], registry=r)
        self.ready = Gauge("tinyforge_serving_model_ready", "1 when the model serves, 0 while loading or failed.",
                           ["model"], registry=r)
