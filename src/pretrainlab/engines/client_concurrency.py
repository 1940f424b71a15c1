"""The engine client's view of one endpoint: its connection and its adaptive concurrency limit.

Slow start (+1 per success, so the limit doubles every round trip) until the first overload, then
additive increase (+1 per full window of successes) while the smoothed latency stays near its baseline;
multiplicative decrease (halve) on a burst of overload signals, at most once per flight of requests; and a
pause when the server sends Retry-After. See docs/llm.md ("How the client keeps engines busy").
"""

from __future__ import annotations

import os

import openai

from pretrainlab.engines.client_errors import OVERLOAD_REASONS, Failure
from pretrainlab.engines.client_types import ClientConfig, EndpointSpec, EndpointStats


class _Endpoint:
    def __init__(self, spec: EndpointSpec, config: ClientConfig) -> None:
        if not 1 <= spec.min_concurrency <= spec.max_concurrency:
            raise ValueError(f"{spec.label}: need 1 <= min_concurrency <= max_concurrency")
        self.spec = spec
        self.label = spec.label
        self.client = openai.AsyncOpenAI(
            base_url=spec.base_url,
            api_key=(os.environ.get(spec.api_key_env) if spec.api_key_env else None) or "EMPTY",
            max_retries=0,
            timeout=config.timeout_s,
        )
        self.config = config
        self.limit = min(max(spec.initial_concurrency, spec.min_concurrency), spec.max_concurrency)
        self.inflight = 0
        self.paused_until = 0.0
        self.epoch = 0
        self.ok_since_change = 0
        self.overloads = 0  # overload signals at the current epoch
        self.ewma: float | None = None
        self.baseline: float | None = None
        self.stats = EndpointStats(self.label, self.limit, self.limit)

    def free(self, now: float) -> int:
        return 0 if now < self.paused_until else self.limit - self.inflight

    def on_success(self, latency: float) -> None:
        self.ewma = latency if self.ewma is None else 0.8 * self.ewma + 0.2 * latency
        if self.baseline is None or self.ewma < self.baseline:
            self.baseline = self.ewma
        else:
            self.baseline += (self.ewma - self.baseline) * 0.002  # forget a stale minimum slowly
        self.ok_since_change += 1
        cfg = self.config
        latency_holds = self.ewma <= cfg.latency_tolerance * self.baseline + cfg.latency_slack_s
        # slow start until the first decrease (+1 per success: the limit doubles every round trip),
        # then additive increase (+1 per full window of successes)
        needed = 1 if self.epoch == 0 else self.limit
        if self.ok_since_change >= needed and latency_holds and self.limit < self.spec.max_concurrency:
            self.limit += 1
            self.ok_since_change = 0
        self._sync()

    def on_failure(self, failure: Failure, epoch: int, now: float) -> None:
        self.ok_since_change = 0
        if failure.reason in OVERLOAD_REASONS and epoch == self.epoch:
            # multiplicative decrease on a burst, once per flight: replies to requests sent before the
            # decrease (the rest of the same burst) carry an older epoch and do not count again
            self.overloads += self.config.overload_burst if failure.reason == "rate_limit" else 1
            if self.overloads >= self.config.overload_burst:
                self.limit = max(self.spec.min_concurrency, self.limit // 2)
                self.epoch += 1
                self.overloads = 0
                self.stats.decreases += 1
        if failure.retry_after is not None:
            self.pause(failure.retry_after, now)
        self._sync()

    def pause(self, retry_after: float, now: float) -> None:
        """Send nothing until ``now + retry_after`` (clamped); a pause already as long stays as it is, so
        the same Retry-After applied again (when the reply comes in, then when it is settled) counts once."""
        until = now + min(retry_after, self.config.retry_after_max_s)
        if until > self.paused_until:
            self.stats.paused_s += until - max(self.paused_until, now)
            self.paused_until = until

    def _sync(self) -> None:
        s = self.stats
        s.limit, s.inflight, s.latency_ewma_s = self.limit, self.inflight, self.ewma
        s.max_limit_seen = max(s.max_limit_seen, self.limit)
