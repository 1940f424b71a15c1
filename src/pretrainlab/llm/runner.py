"""Running an `llm` exercise's items against its engines, many in flight, records out in item order.

Items are started while fewer than 2 x (the endpoints' summed concurrency) are live. Each request goes
to the engine client of the endpoints its step names (one client per endpoint set, started on the first
request the cache cannot answer, so a fully cached run starts no engine). With the request cache on,
every answer is journaled before it is used. Finished items are released in item order through a
reorder buffer, so the record file does not depend on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pretrainlab.corpora import SeedItem
from pretrainlab.engines.client import EngineClient, Result
from pretrainlab.engines.journal import CachedRunStats, cached_run
from pretrainlab.exercises.base import Document, GenerateContext
from pretrainlab.llm.chain import Chain, Item


@dataclass
class _Lane:
    """One engine client (the endpoints a step or the judge sends to) with its own request queue."""

    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None

    async def source(self) -> AsyncIterator[dict[str, Any]]:
        while (req := await self.queue.get()) is not None:
            yield req


class _LazyClient:
    """An engine client made when the first item arrives (what `cached_run` needs of a client)."""

    def __init__(self, make: Callable[[], EngineClient]) -> None:
        self.make = make
        self.client: EngineClient | None = None

    async def run(self, items: AsyncIterable[Any]) -> AsyncIterator[Result]:
        source = aiter(items)
        try:
            first = await anext(source)
        except StopAsyncIteration:
            return
        self.client = self.make()

        async def rest() -> AsyncIterator[Any]:
            yield first
            async for item in source:
                yield item

        async for r in self.client.run(rest()):
            yield r


class Runner:
    """Sends an exercise's requests and feeds the replies to its chain; counts tokens and requests."""

    def __init__(self, ctx: GenerateContext, make_chain: Callable[[Callable[..., None]], Chain]):
        self.ctx = ctx
        self.pool, self.cache = ctx.resources
        self.chain = make_chain(self.send)
        self.results: asyncio.Queue = asyncio.Queue()
        self.lanes: dict[tuple[str, ...], _Lane] = {}
        self.clients: list[_LazyClient] = []
        self.cache_stats = CachedRunStats()
        self.pending: dict[str, tuple[Item, str, Any]] = {}  # request id -> (item, what, payload)
        self.request_ids = itertools.count()
        self.tokens: dict[str, Counter] = {}  # endpoint -> prompt/completion tokens, requests
        self.calls: Counter = Counter()

    # -- requests ------------------------------------------------------------------------------------
    def send(
        self, item: Item, endpoint: str | None, what: str, messages: Any, params: dict, payload: Any
    ) -> None:
        names = self.pool.names(endpoint)
        lane = self.lanes.get(names)
        if lane is None:
            lane = self.lanes[names] = _Lane()
            client = _LazyClient(lambda n=names: EngineClient(self.pool.specs(n), self.pool.client_config()))
            self.clients.append(client)
            lane.task = asyncio.create_task(self._pump(lane, client, self.pool.model(names)))
        rid = f"{item.index}:{what}:{next(self.request_ids)}"
        self.pending[rid] = (item, what, payload)
        lane.queue.put_nowait({"id": rid, "messages": messages, "params": params})

    async def _pump(self, lane: _Lane, client: _LazyClient, model: str) -> None:
        try:
            if self.cache is not None:
                stream = cached_run(client, lane.source(), self.cache, model=model, stats=self.cache_stats)
            else:
                stream = client.run(lane.source())
            async for r in stream:
                self.results.put_nowait(r)
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer
            self.results.put_nowait(e)
            raise

    def _book(self, r: Result) -> dict[str, Any]:
        """Count a reply's tokens against its endpoint; returns its usage for the record's meta."""
        t = self.tokens.setdefault(r.endpoint or "?", Counter())
        t["prompt_tokens"] += r.prompt_tokens
        t["completion_tokens"] += r.completion_tokens
        t["requests"] += 1
        return {
            "endpoint": r.endpoint,
            "finish_reason": r.finish_reason,
            "latency_s": round(r.latency_s, 4),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "attempts": r.attempts,
        }

    # -- the loop ------------------------------------------------------------------------------------
    async def documents(
        self, items: Iterator[tuple[int, SeedItem | None]], total: int
    ) -> AsyncIterator[Document]:
        """Every item's documents, in item order."""
        finished: dict[int, list[Document]] = {}
        next_out = live = done = 0
        max_live = 2 * sum(ep.max_concurrency for ep in self.ctx.design.llm.endpoints)  # type: ignore[union-attr]
        exhausted = False
        t0 = last_progress = time.monotonic()
        try:
            while True:
                while not exhausted and live < max_live:
                    try:
                        index, seed = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    item = self.chain.start(index, seed)
                    if self.chain.send_step(item):
                        live += 1
                    else:
                        finished[index] = []
                while next_out in finished:
                    for doc in finished.pop(next_out):
                        yield doc
                    next_out += 1
                    done += 1
                now = time.monotonic()
                if now - last_progress > 0.5 or (exhausted and live == 0):
                    last_progress = now
                    self.ctx.progress(done, total, self.progress_info(now - t0))
                if exhausted and live == 0:
                    break
                r = await self.results.get()
                if isinstance(r, BaseException):
                    raise r
                item, what, payload = self.pending.pop(r.id)
                self.calls[what] += 1
                usage = self._book(r)
                if what == "step":
                    busy = self.chain.on_step(item, r, usage)
                else:
                    busy = self.chain.on_judge(item, r, usage, payload)
                if not busy:
                    live -= 1
                    finished[item.index] = item.docs
        finally:
            await self._close(interrupted=live > 0)

    async def _close(self, interrupted: bool) -> None:
        for lane in self.lanes.values():
            lane.queue.put_nowait(None)
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        if interrupted:  # do not wait for replies nobody will use
            for t in tasks:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in self.clients:
            if client.client is not None:
                await client.client.aclose()

    def progress_info(self, elapsed: float) -> str:
        """What an llm exercise adds to its progress report: tokens/s, retried requests (transient failures
        the engine client sent again: a rising count is a struggling engine, not a hang) and rejected
        items. Items done of total, their rate and the ETA are the generate stage's part of the line."""
        toks = sum(c["prompt_tokens"] + c["completion_tokens"] for c in self.tokens.values())
        retries = sum(sum(c.client.stats.retries.values()) for c in self.clients if c.client is not None)
        rejected = sum(self.chain.rejects.counts.values())
        return f"{toks / max(elapsed, 1e-9):,.0f} tok/s · retries {retries} · rejected {rejected}"

    def summary(self, total: int, records: int) -> dict[str, Any]:
        """The exercise's counts for the stage manifest."""
        answered = sum(self.calls.values())
        return {
            "items": total,
            "records": records,
            "rejected": self.chain.rejects.by_reason(),
            "requests": {
                "answered": answered,
                "from_cache": self.cache_stats.hits,
                "sent": self.cache_stats.sent if self.cache is not None else answered,
            },
            "tokens": {ep: dict(sorted(c.items())) for ep, c in sorted(self.tokens.items())},
            "rejected_file": self.chain.rejects.path.name,
        }
