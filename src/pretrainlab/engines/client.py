"""Engine client: keep one or more OpenAI-compatible chat servers busy, without losing an item.

``EngineClient(endpoints).run(items)`` is an async generator: it pulls requests lazily from any iterable or
async iterable, spreads them over the endpoints (the one with the most free capacity wins), adapts each
endpoint's concurrency (AIMD), retries transient failures with exponential backoff and jitter, and yields
exactly one :class:`Result` per input item -- ok, or dropped with a short reason class. At most
``window`` items are ever held (in flight, waiting for a retry, or completed but not yet yielded).

This file is the loop; what it takes and gives is in :mod:`~pretrainlab.engines.client_types`, how a
failure is judged in :mod:`~pretrainlab.engines.client_errors`, and each endpoint's adaptive limit in
:mod:`~pretrainlab.engines.client_concurrency`; their public names are re-exported here.

See docs/llm.md ("When the engine fails", "How the client keeps engines busy") for the retry/drop table and
the concurrency policy.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pretrainlab.engines.client_concurrency import _Endpoint
from pretrainlab.engines.client_errors import (
    OVERLOAD_REASONS,
    RETRY_REASONS,
    Failure,
    _Malformed,
    _short,
    classify_error,
)
from pretrainlab.engines.client_types import (
    ClientConfig,
    EndpointSpec,
    EndpointStats,
    Request,
    Result,
    Stats,
    dumps_stats,
)

__all__ = [
    "OVERLOAD_REASONS",
    "RETRY_REASONS",
    "ClientConfig",
    "EndpointSpec",
    "EndpointStats",
    "EngineClient",
    "Failure",
    "Request",
    "Result",
    "Stats",
    "classify_error",
    "dumps_stats",
]


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
    at: float  # time.monotonic() when the reply (or failure) came in
    result: Result | None = None
    failure: Failure | None = None


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
                if done.failure is not None and done.failure.retry_after is not None:
                    # pause now, not when the loop settles this reply: until then this worker and the
                    # endpoint's others would go on sending into the Retry-After
                    ep.pause(done.failure.retry_after, done.at)
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
                    # the feeder waits for room in the window, and only a yield makes room (taking an
                    # item from the buffer moves it into the window): without this wake-up a feeder that
                    # checked just before the yield sleeps for good, and once the buffer is drained so
                    # does this loop (it counts on the live feeder to wake it)
                    space.set()
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
            now = time.monotonic()
            return _Done(item, ep, epoch, now - t0, now, result=result)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 -- every failure becomes a classified outcome
            now = time.monotonic()
            return _Done(item, ep, epoch, now - t0, now, failure=classify_error(e))

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
        ep.on_failure(f, done.epoch, done.at)
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
