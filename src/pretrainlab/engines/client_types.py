"""What the engine client takes and gives back: an endpoint's spec, a request, its result, the client's
settings and the running statistics (per run and per endpoint), with ``dumps_stats`` to log them.

Plain data; the loop that fills them is :mod:`pretrainlab.engines.client`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ClientConfig", "EndpointSpec", "EndpointStats", "Request", "Result", "Stats", "dumps_stats"]


@dataclass(frozen=True)
class EndpointSpec:
    """One OpenAI-compatible server. The API key is read from the environment variable *named* by
    ``api_key_env`` when the client is built; the key itself is never stored here, in stats or results."""

    base_url: str
    model: str
    api_key_env: str | None = None
    name: str | None = None  # label used in results and stats; defaults to host:port of base_url
    min_concurrency: int = 1
    max_concurrency: int = 64
    initial_concurrency: int = 4

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.base_url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else self.base_url


@dataclass(frozen=True)
class Request:
    """One item: an id, the chat messages (or a plain prompt string, sent to ``/completions``), and
    generation params passed through (temperature, max_tokens, n, seed, stop, extra_body, ...)."""

    id: str
    messages: list[dict[str, Any]] | str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, item: Request | Mapping[str, Any]) -> Request:
        if isinstance(item, Request):
            return item
        if isinstance(item, Mapping):
            rest = {k: v for k, v in item.items() if k not in ("id", "messages", "params")}
            params = {**item.get("params", {}), **rest}
            messages = item["messages"]
            messages = messages if isinstance(messages, str) else list(messages)
            return cls(id=str(item["id"]), messages=messages, params=params)
        raise TypeError(f"expected a Request or a mapping with id/messages, got {type(item).__name__}")


@dataclass
class Result:
    """Exactly one per input item. ``ok`` is False for dropped items, with ``error`` the reason class
    (e.g. ``bad_request``, ``rate_limit``) and ``message`` a short human-readable explanation."""

    id: str
    ok: bool
    endpoint: str | None = None  # label of the endpoint that answered (or failed last)
    text: str | None = None  # first choice's content
    choices: list[str | None] = field(default_factory=list)
    finish_reason: str | None = None  # first choice's finish_reason
    finish_reasons: list[str | None] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  # of the successful (or last) attempt
    attempts: int = 0
    error: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClientConfig:
    timeout_s: float = 120.0  # per attempt
    max_attempts: int = 5  # per item, across endpoints
    # the delay before retry k (k = 1, 2, ...) is U(0.5, 1) * min(backoff_max_s, backoff_base_s * 2**(k-1))
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0  # Retry-After values are clamped to this
    window: int | None = None  # max items held at once; default 2 * sum(max_concurrency)
    latency_tolerance: float = 2.0  # grow only while smoothed latency <= tolerance * baseline + slack
    latency_slack_s: float = 0.05
    # overload signals (5xx, timeouts, connection/truncation errors) from requests sent since the last
    # decrease that it takes to halve an endpoint's concurrency; a 429 halves on its own
    overload_burst: int = 3
    progress_interval_s: float = 1.0
    seed: int | None = None  # for the retry jitter


@dataclass
class EndpointStats:
    label: str
    limit: int
    max_limit_seen: int
    inflight: int = 0
    requests: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    decreases: int = 0
    paused_s: float = 0.0  # total Retry-After pause requested
    latency_ewma_s: float | None = None


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    pulled: int = 0  # items taken from the input
    yielded: int = 0  # results handed to the caller
    ok: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> items
    retries: Counter = field(default_factory=Counter)  # reason -> retried attempts
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_outstanding: int = 0  # the most items ever held at once (pulled but not yet yielded)
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    @property
    def outstanding(self) -> int:
        return self.pulled - self.yielded

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def items_per_s(self) -> float:
        return self.yielded / max(self.elapsed_s, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.completion_tokens) / max(self.elapsed_s, 1e-9)

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / max(self.elapsed_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "pulled": self.pulled,
            "yielded": self.yielded,
            "ok": self.ok,
            "dropped": dict(self.dropped),
            "retries": dict(self.retries),
            "attempts": self.attempts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "items_per_s": round(self.items_per_s, 2),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "completion_tokens_per_s": round(self.completion_tokens_per_s, 1),
            "max_outstanding": self.max_outstanding,
            "endpoints": {
                k: {**asdict(v), "errors": dict(v.errors), "paused_s": round(v.paused_s, 3)}
                for k, v in self.endpoints.items()
            },
        }


def dumps_stats(stats: Stats) -> str:
    """Stats as one JSON line (contains no secrets: keys are never stored)."""
    return json.dumps(stats.to_dict(), sort_keys=True)
