"""Engine client: keep one or more OpenAI-compatible chat servers busy, without losing an item.

``EngineClient(endpoints).run(items)`` is an async generator: it pulls requests lazily from any iterable or
async iterable, spreads them over the endpoints (the one with the most free capacity wins), adapts each
endpoint's concurrency (AIMD), retries transient failures with exponential backoff and jitter, and yields
exactly one :class:`Result` per input item -- ok, or dropped with a short reason class. At most
``window`` items are ever held (in flight, waiting for a retry, or completed but not yet yielded).

See docs/llm-client.md for the retry/drop table and the concurrency policy.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import openai

__all__ = ["ClientConfig", "EndpointSpec", "EngineClient", "Request", "Result", "Stats", "classify_error"]

# reasons that say "this endpoint is overloaded": they halve its concurrency (once per flight of requests)
OVERLOAD_REASONS = frozenset({"rate_limit", "server_error", "timeout", "connection", "truncated"})
# reasons worth another attempt (on any endpoint)
RETRY_REASONS = OVERLOAD_REASONS | {"malformed", "conflict"}


# --------------------------------------------------------------------------------------------------------
# public data types
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# error classification
# --------------------------------------------------------------------------------------------------------

_DROP_STATUS = {
    400: "bad_request",
    401: "auth",
    403: "auth",
    404: "not_found",
    413: "too_large",
    422: "unprocessable",
}


@dataclass(frozen=True)
class Failure:
    reason: str  # short class, e.g. rate_limit
    retry: bool
    message: str
    retry_after: float | None = None  # seconds, from the Retry-After header


def classify_error(exc: BaseException) -> Failure:
    """Map an exception from one attempt to (reason, retry?, message, Retry-After)."""
    msg = _short(exc)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError, its base class
        return Failure("timeout", True, msg)
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
        if "Protocol" in cause or "ReadError" in cause:  # e.g. body shorter than Content-Length
            return Failure("truncated", True, f"{cause}: {_short(exc.__cause__)}")
        return Failure("connection", True, f"{cause or type(exc).__name__}: {_short(exc.__cause__ or exc)}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers)
        if status == 429:
            return Failure("rate_limit", True, msg, retry_after)
        if status >= 500:
            return Failure("server_error", True, f"HTTP {status}: {msg}", retry_after)
        if status == 408:
            return Failure("timeout", True, f"HTTP 408: {msg}")
        if status == 409:
            return Failure("conflict", True, f"HTTP 409: {msg}")
        return Failure(_DROP_STATUS.get(status, "client_error"), False, f"HTTP {status}: {msg}")
    if isinstance(exc, openai.APIResponseValidationError | ValueError | _Malformed):
        # JSONDecodeError is a ValueError: the body was cut or is not JSON
        return Failure("malformed", True, f"{type(exc).__name__}: {msg}")
    return Failure("internal", False, f"{type(exc).__name__}: {msg}")


class _Malformed(Exception):
    """The body parsed, but is not a usable chat completion."""


def _short(exc: BaseException | None, limit: int = 200) -> str:
    if exc is None:
        return ""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    req: Request
    attempts: int = 0
    last: Failure | None = None
    last_endpoint: str | None = None


@dataclass
class _Done:
    """What one attempt came back with."""

    item: _Item
    endpoint: _Endpoint
    epoch: int  # the endpoint's epoch when the attempt was sent
    latency: float
    result: Result | None = None
    failure: Failure | None = None


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
            pause = min(failure.retry_after, self.config.retry_after_max_s)
            until = now + pause
            if until > self.paused_until:
                self.stats.paused_s += until - max(self.paused_until, now)
                self.paused_until = until
        self._sync()

    def _sync(self) -> None:
        s = self.stats
        s.limit, s.inflight, s.latency_ewma_s = self.limit, self.inflight, self.ewma
        s.max_limit_seen = max(s.max_limit_seen, self.limit)


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for x in items:
            yield x
    else:
        for x in items:
            yield x


# --------------------------------------------------------------------------------------------------------
# the client
# --------------------------------------------------------------------------------------------------------


class EngineClient:
    """See the module docstring. Use as ``async with EngineClient(...) as c: async for r in c.run(items)``."""

    def __init__(
        self,
        endpoints: EndpointSpec | Iterable[EndpointSpec],
        config: ClientConfig | None = None,
        *,
        progress: Callable[[Stats], None] | None = None,
    ) -> None:
        specs = [endpoints] if isinstance(endpoints, EndpointSpec) else list(endpoints)
        if not specs:
            raise ValueError("need at least one endpoint")
        labels = [s.label for s in specs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"endpoint labels must be unique, got {labels}; set EndpointSpec.name")
        self.config = config or ClientConfig()
        self.progress = progress
        self.endpoints = [_Endpoint(s, self.config) for s in specs]
        self.window = self.config.window or 2 * sum(s.max_concurrency for s in specs)
        if self.window < 1:
            raise ValueError("window must be >= 1")
        self._rng = random.Random(self.config.seed)
        self.stats = Stats()

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.client.close()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the loop --------------------------------------------------------------------------------------

    async def run(self, items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Result]:
        """Yield one Result per item, in completion order. Items are ``Request`` or mappings with
        ``id``, ``messages`` and optional ``params`` (other keys are taken as params)."""
        stats = self.stats = Stats()
        for ep in self.endpoints:
            ep._sync()
            stats.endpoints[ep.label] = ep.stats
        # a plain iterable is read inline; an async one by a feeder task into a small buffer, so a source
        # that waits (e.g. for replies this loop has yet to settle) never stalls the loop
        sync_items = None if isinstance(items, AsyncIterable) else iter(items)
        buffer: deque[Any] = deque()
        space = asyncio.Event()
        feeder: asyncio.Task | None = None
        exhausted = False
        tasks: set[asyncio.Task] = set()  # one worker per busy slot
        finished: deque[_Done] = deque()  # attempts done but not yet settled
        wakeup = asyncio.Event()

        waiting: list[tuple[float, int, _Item]] = []  # (ready_at, seq, item): retries waiting for backoff
        seq = itertools.count()
        ready: list[Result] = []
        last_progress = 0.0

        async def feed(source: AsyncIterable[Any]) -> None:
            try:
                async for raw in source:
                    buffer.append(raw)
                    wakeup.set()
                    while stats.outstanding + len(buffer) >= self.window:
                        space.clear()
                        await space.wait()
            finally:
                wakeup.set()

        if sync_items is None:
            feeder = asyncio.create_task(feed(items))  # type: ignore[arg-type]

        def pick(now: float) -> _Endpoint | None:
            best = max(self.endpoints, key=lambda e: (e.free(now), -e.inflight))
            return best if best.free(now) > 0 else None

        def next_item(now: float) -> _Item | None:
            """The next item to send: a retry whose backoff is over, else a fresh one while the window
            allows (items that are not requests become drops on the way), else None."""
            nonlocal exhausted
            if waiting and waiting[0][0] <= now:
                return heapq.heappop(waiting)[2]
            while not exhausted and stats.outstanding < self.window:
                if sync_items is not None:
                    try:
                        raw = next(sync_items)
                    except StopIteration:
                        exhausted = True
                        return None
                elif buffer:
                    raw = buffer.popleft()
                    space.set()
                else:
                    if feeder is not None and feeder.done():
                        feeder.result()  # the source's own exception, if it raised one
                        exhausted = True
                    return None
                stats.pulled += 1
                stats.max_outstanding = max(stats.max_outstanding, stats.outstanding)
                try:
                    return _Item(Request.coerce(raw))
                except (TypeError, KeyError, ValueError) as e:
                    rid = str(raw.get("id")) if isinstance(raw, Mapping) else f"#{stats.pulled - 1}"
                    ready.append(
                        self._drop(_Item(Request(rid, [])), Failure("invalid_item", False, _short(e)))
                    )
                    wakeup.set()
            return None

        def claim(ep: _Endpoint, item: _Item) -> int:
            item.attempts += 1
            stats.attempts += 1
            ep.inflight += 1
            ep.stats.requests += 1
            ep._sync()
            return ep.epoch

        async def work(ep: _Endpoint, item: _Item, epoch: int) -> None:
            # a worker sends its next request as soon as a reply is in, from the same task (and so
            # over the connection it just used), rather than a loop turn later from a new task
            while True:
                done = await self._attempt(ep, item, epoch)
                ep.inflight -= 1
                finished.append(done)
                wakeup.set()
                if ep.free(time.monotonic()) <= 0 or (nxt := next_item(time.monotonic())) is None:
                    return
                item, epoch = nxt, claim(ep, nxt)

        crashed: list[BaseException] = []  # a worker that raised: a bug, surfaced by the loop

        def on_exit(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception())  # type: ignore[arg-type]
            wakeup.set()

        def launch(ep: _Endpoint, item: _Item) -> None:
            task = asyncio.create_task(work(ep, item, claim(ep, item)))
            task.add_done_callback(on_exit)
            tasks.add(task)

        try:
            while True:
                # 1. dispatch: retries whose backoff is over first, then fresh items while the window allows
                now = time.monotonic()
                while (ep := pick(now)) is not None and (item := next_item(now)) is not None:
                    launch(ep, item)
                    now = time.monotonic()

                # 2. hand over what is done
                while ready:
                    result = ready.pop(0)
                    stats.yielded += 1
                    yield result
                if self.progress and time.monotonic() - last_progress >= self.config.progress_interval_s:
                    last_progress = time.monotonic()
                    self.progress(stats)

                # 3. wait for a reply, a retry's backoff or a pause to end
                if not tasks and not waiting and exhausted:
                    break
                # something will wake us: a reply, or the feeder reading the next item
                busy = bool(tasks) or (feeder is not None and not feeder.done())
                takeable = (
                    not exhausted
                    and (bool(buffer) or (feeder is not None and feeder.done()))
                    and stats.outstanding < self.window
                    and pick(time.monotonic()) is not None
                )
                now = time.monotonic()
                # (a retry that is due but finds no free slot waits for a reply, not for a timer)
                wake = [waiting[0][0]] if waiting and waiting[0][0] > now else []
                wake += [ep.paused_until for ep in self.endpoints if ep.paused_until > now]
                timeout = max(0.0, min(wake) - now) + 1e-3 if wake else None
                if not finished and not takeable:
                    wakeup.clear()
                    if timeout is None and busy:
                        await wakeup.wait()
                    elif busy:
                        try:
                            await asyncio.wait_for(wakeup.wait(), timeout)
                        except asyncio.TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(timeout if timeout is not None else 0)
                if crashed:
                    raise crashed[0]
                while finished:
                    r = self._settle(finished.popleft(), waiting, next(seq))
                    if r is not None:
                        ready.append(r)
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            stats.finished = time.monotonic()
            for ep in self.endpoints:
                ep.inflight = 0
                ep._sync()
            if self.progress:
                self.progress(stats)

    # -- one attempt ---------------------------------------------------------------------------------

    async def _attempt(self, ep: _Endpoint, item: _Item, epoch: int) -> _Done:
        t0 = time.monotonic()
        try:
            if isinstance(item.req.messages, str):
                completion = await ep.client.completions.create(
                    model=ep.spec.model, prompt=item.req.messages, **item.req.params
                )
            else:
                completion = await ep.client.chat.completions.create(
                    model=ep.spec.model, messages=item.req.messages, **item.req.params
                )
            result = _to_result(item, ep.label, completion)
            return _Done(item, ep, epoch, time.monotonic() - t0, result=result)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 -- every failure becomes a classified outcome
            return _Done(item, ep, epoch, time.monotonic() - t0, failure=classify_error(e))

    def _settle(self, done: _Done, waiting: list, seq: int) -> Result | None:
        """Book one finished attempt; return the item's Result if it is final, else queue its retry."""
        ep, item, stats, now = done.endpoint, done.item, self.stats, time.monotonic()
        item.last_endpoint = ep.label
        if done.result is not None:
            ep.stats.ok += 1
            ep.on_success(done.latency)
            r = done.result
            r.latency_s, r.attempts = done.latency, item.attempts
            stats.ok += 1
            stats.prompt_tokens += r.prompt_tokens
            stats.completion_tokens += r.completion_tokens
            return r
        f = done.failure
        assert f is not None
        item.last = f
        ep.stats.errors[f.reason] += 1
        ep.on_failure(f, done.epoch, now)
        if not f.retry:
            return self._drop(item, f, done.latency)
        if item.attempts >= self.config.max_attempts:
            msg = f"gave up after {item.attempts} attempts; last: {f.message}"
            return self._drop(item, Failure(f.reason, False, msg), done.latency)
        stats.retries[f.reason] += 1
        k = item.attempts  # 1 for the first retry
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (k - 1))
        delay *= 0.5 + 0.5 * self._rng.random()
        heapq.heappush(waiting, (now + delay, seq, item))
        return None

    def _drop(self, item: _Item, f: Failure, latency: float = 0.0) -> Result:
        self.stats.dropped[f.reason] += 1
        return Result(
            id=item.req.id,
            ok=False,
            endpoint=item.last_endpoint,
            latency_s=latency,
            attempts=item.attempts,
            error=f.reason,
            message=f.message,
        )


def _to_result(item: _Item, label: str, completion: Any) -> Result:
    choices = getattr(completion, "choices", None)
    if isinstance(completion, str | bytes) or not isinstance(choices, list) or not choices:
        raise _Malformed(f"not a completion: {str(completion)[:80]!r}")
    texts: list[str | None] = []
    reasons: list[str | None] = []
    for c in choices:
        message = getattr(c, "message", None)
        if message is not None:
            texts.append(getattr(message, "content", None))
        elif isinstance(getattr(c, "text", None), str):  # a /completions choice
            texts.append(c.text)
        else:
            raise _Malformed("choice without a message")
        reasons.append(getattr(c, "finish_reason", None))
    usage = getattr(completion, "usage", None)
    return Result(
        id=item.req.id,
        ok=True,
        endpoint=label,
        text=texts[0],
        choices=texts,
        finish_reason=reasons[0],
        finish_reasons=reasons,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )


def dumps_stats(stats: Stats) -> str:
    """Stats as one JSON line (contains no secrets: keys are never stored)."""
    return json.dumps(stats.to_dict(), sort_keys=True)
