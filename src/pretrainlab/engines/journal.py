"""A durable request journal for the engine client: never pay for the same completion twice.

``request_key(model, messages, params)`` is a content hash of what is sent to the server (not of the item's
id, the endpoint URL or its API key). :class:`RequestCache` is an append-only JSONL journal
(``<dir>/journal.jsonl``) of ``{"key", "id", "result"}`` lines with an in-memory index ``key -> line``
built when it is opened; the last line for a key wins. ``cached_run(client, requests, cache)`` wraps
:meth:`EngineClient.run`: requests whose key is answered in the journal are served from it without being
sent, the rest go to the client, and each result is written and fsynced before it is yielded.

Durability: results are appended in batches (what has arrived since the last write), each batch with one
``write`` + ``flush`` + ``os.fsync``. On open, a tail that is not a complete JSON line (a write cut short
by a kill or a crash) is truncated away. The directory is locked (``flock``) while a cache is open, so two
processes cannot interleave lines.

See docs/llm.md for the resume guarantee (what may be re-sent after a kill, and why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pretrainlab.engines.client import EngineClient, Request, Result, _aiter
from pretrainlab.records import content_id, dumps

__all__ = [
    "JOURNAL_NAME",
    "PERMANENT_REASONS",
    "CachedRunStats",
    "RequestCache",
    "cached_run",
    "request_key",
]

JOURNAL_NAME = "journal.jsonl"
KEY_VERSION = "llm-request/v1"

# drop reasons that say "this request itself is wrong" (HTTP 400, 413, 422, other 4xx): sending it again
# gives the same answer, so a journaled drop with one of these reasons is final (unless retry_permanent).
# 401/403 (auth) and 404 (not_found) are deliberately NOT here: they are usually a wrong key, URL or model
# name, i.e. a fault of the run's configuration that is fixed and re-run, not of the request.
PERMANENT_REASONS = frozenset({"bad_request", "too_large", "unprocessable", "client_error"})

_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(Result))


def request_key(
    model: str, messages: Iterable[Mapping[str, Any]] | str, params: Mapping[str, Any] | None = None
) -> str:
    """Content hash (128-bit hex) of a canonical request: the model, the messages and every generation
    param (temperature, max_tokens, n, seed, stop, extra_body, ...). Dict key order does not matter;
    list order (the messages, stop sequences) does. Endpoint URL and API key are not part of it."""
    messages = messages if isinstance(messages, str) else list(messages)
    canon = {"model": model, "messages": messages, "params": dict(params or {})}
    return content_id(KEY_VERSION, dumps(canon))


def _result_from_dict(d: Mapping[str, Any], rid: str | None = None) -> Result:
    kw = {k: v for k, v in d.items() if k in _RESULT_FIELDS}
    if rid is not None:
        kw["id"] = rid
    return Result(**kw)


@dataclass
class _Entry:
    offset: int
    length: int
    id: str
    ok: bool
    error: str | None


class RequestCache:
    """``with RequestCache(directory) as cache: ...`` -- a journal of completed results keyed by
    :func:`request_key`. ``retry_permanent=False`` (default): a journaled drop whose reason is in
    ``permanent_reasons`` counts as an answer; every other journaled drop is sent again on the next run.
    ``retry_permanent=True``: every journaled drop is sent again."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retry_permanent: bool = False,
        permanent_reasons: frozenset[str] = PERMANENT_REASONS,
        fsync: bool = True,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / JOURNAL_NAME
        self.retry_permanent = retry_permanent
        self.permanent_reasons = frozenset(permanent_reasons)
        self.fsync = fsync
        self.index: dict[str, _Entry] = {}
        self.lines = 0  # good lines in the journal (superseded ones included)
        self.corrupt = 0  # unparsable lines in the middle of the journal, skipped
        self.truncated_bytes = 0  # bytes of a torn tail cut away at open
        self._append_lock = threading.Lock()  # appends come from worker threads (several runs may share)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RuntimeError(f"{self.path} is open in another process") from None
        try:
            self._load()
        except BaseException:
            os.close(self._fd)
            raise

    # -- open / close ----------------------------------------------------------------------------------

    def _load(self) -> None:
        offset = good_end = 0
        bad: list[int] = []  # start offsets of unparsable lines
        with open(self.path, "rb") as f:
            for raw in f:
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n"):
                    break  # torn tail: cut below
                try:
                    rec = json.loads(raw)
                    key, rid, res = rec["key"], rec["id"], rec["result"]
                    if not isinstance(key, str) or not isinstance(res, dict):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    bad.append(start)
                    continue
                ok = bool(res.get("ok"))
                self.index[key] = _Entry(start, len(raw), str(rid), ok, None if ok else res.get("error"))
                self.lines += 1
                good_end = offset
        # bad lines before the last good one are skipped; whatever follows the last good line (a line torn
        # by a kill, garbage left by a crash) is cut, so the next append starts on a line boundary
        self.corrupt = sum(1 for b in bad if b < good_end)
        size = os.fstat(self._fd).st_size
        if good_end < size:
            self.truncated_bytes = size - good_end
            os.ftruncate(self._fd, good_end)
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    # -- lookup ----------------------------------------------------------------------------------------

    def final(self, key: str) -> bool:
        """Whether the journal holds an answer for ``key`` that the policy says not to send again."""
        e = self.index.get(key)
        if e is None:
            return False
        if e.ok:
            return True
        return not self.retry_permanent and e.error in self.permanent_reasons

    def get(self, key: str) -> dict[str, Any] | None:
        """The last journaled result dict for ``key`` (ok or dropped), or None."""
        e = self.index.get(key)
        if e is None:
            return None
        raw = os.pread(self._fd, e.length, e.offset)
        return json.loads(raw)["result"]

    def lookup(self, key: str, rid: str | None = None) -> Result | None:
        """The journaled Result for ``key`` if it is final under the policy (with ``id`` set to ``rid``)."""
        if not self.final(key):
            return None
        d = self.get(key)
        return None if d is None else _result_from_dict(d, rid)

    # -- append ----------------------------------------------------------------------------------------

    def append(self, entries: Iterable[tuple[str, Result | Mapping[str, Any]]]) -> int:
        """Append ``(key, result)`` pairs as one batch: one write, flush and fsync. Returns lines written."""
        if self._fd < 0:
            raise ValueError("cache is closed")
        lines: list[bytes] = []
        meta: list[tuple[str, str, bool, str | None]] = []
        for key, result in entries:
            d = result.to_dict() if isinstance(result, Result) else dict(result)
            lines.append((dumps({"key": key, "id": d["id"], "result": d}) + "\n").encode("utf-8"))
            meta.append((key, str(d["id"]), bool(d.get("ok")), None if d.get("ok") else d.get("error")))
        if not lines:
            return 0
        with self._append_lock:
            return self._write_batch(lines, meta)

    def _write_batch(self, lines: list[bytes], meta: list[tuple[str, str, bool, str | None]]) -> int:
        start = os.fstat(self._fd).st_size  # O_APPEND, single writer (flock): the batch lands here
        view = memoryview(b"".join(lines))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if self.fsync:
                os.fsync(self._fd)
        except BaseException:
            os.ftruncate(
                self._fd, start
            )  # no half batch left behind (e.g. ENOSPC): the next one starts clean
            raise
        for line, (key, rid, ok, err) in zip(lines, meta, strict=True):
            self.index[key] = _Entry(start, len(line), rid, ok, err)
            start += len(line)
        self.lines += len(lines)
        return len(lines)

    def results(self) -> dict[str, Result]:
        """key -> last journaled Result (any status)."""
        out = {}
        for key in self.index:
            d = self.get(key)
            if d is not None:
                out[key] = _result_from_dict(d)
        return out


# --------------------------------------------------------------------------------------------------------
# the wrapper around EngineClient.run
# --------------------------------------------------------------------------------------------------------


@dataclass
class CachedRunStats:
    requests: int = 0  # items taken from the input
    hits: int = 0  # answered from the journal, not sent
    sent: int = 0  # handed to the client
    resent_dropped: int = 0  # of those, ones whose earlier (retryable) drop was in the journal
    journaled: int = 0  # results appended
    batches: int = 0  # fsynced appends


def _default_model(client: EngineClient) -> str:
    models = {ep.spec.model for ep in client.endpoints}
    if len(models) != 1:
        raise ValueError(f"endpoints serve different models {sorted(models)}; pass model= to cached_run")
    return models.pop()


_DONE = object()


async def cached_run(
    client: EngineClient,
    requests: Iterable[Any] | AsyncIterable[Any],
    cache: RequestCache,
    *,
    model: str | None = None,
    max_pending: int = 32,
    stats: CachedRunStats | None = None,
) -> AsyncIterator[Result]:
    """Yield exactly one Result per request, in any order (reorder by ``id``). Requests whose key has a
    final answer in ``cache`` are answered from it; the rest are sent through ``client.run`` and each
    result is journaled (fsynced, in batches) before it is yielded.

    ``model`` is the model name that goes into the key (default: the endpoints' one model). At most
    ``max_pending`` results from the client are held un-journaled, so a request the server has seen but
    whose result is not on disk is one of at most ``client.window + max_pending`` (see the docs)."""
    if max_pending < 1:
        raise ValueError("max_pending must be >= 1")
    st = stats if stats is not None else CachedRunStats()
    model = model or _default_model(client)
    out: asyncio.Queue = asyncio.Queue()  # (kind, payload): "hit", "miss", "error", or _DONE
    miss_slots = asyncio.Semaphore(max_pending)  # results taken from the client and not yet journaled
    hit_slots = asyncio.Semaphore(max_pending)  # hits queued and not yet yielded
    keys: dict[str, list[str]] = {}  # id -> keys of its requests in flight (a list: ids may repeat)

    async def source() -> AsyncIterator[Any]:
        async for raw in _aiter(requests):
            st.requests += 1
            try:
                req = Request.coerce(raw)
            except (TypeError, KeyError, ValueError) as e:  # same drop as the client's, not journaled
                rid = str(raw.get("id")) if isinstance(raw, Mapping) else f"#{st.requests - 1}"
                await hit_slots.acquire()
                out.put_nowait(("hit", Result(id=rid, ok=False, error="invalid_item", message=str(e)[:200])))
                continue
            key = request_key(model, req.messages, req.params)
            hit = cache.lookup(key, req.id)
            if hit is not None:
                st.hits += 1
                await hit_slots.acquire()
                out.put_nowait(("hit", hit))
                continue
            if key in cache.index:
                st.resent_dropped += 1
            keys.setdefault(req.id, []).append(key)
            st.sent += 1
            yield req

    async def pump() -> None:
        gen = client.run(source())
        try:
            while True:
                await miss_slots.acquire()
                try:
                    r = await gen.__anext__()
                except StopAsyncIteration:
                    miss_slots.release()
                    break
                out.put_nowait(("miss", r))
            out.put_nowait(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer, which re-raises it
            out.put_nowait(("error", e))
        finally:
            await gen.aclose()

    task = asyncio.create_task(pump())
    try:
        done = False
        while not done:
            batch = [await out.get()]
            while not out.empty():
                batch.append(out.get_nowait())
            entries: list[tuple[str, Result]] = []
            ready: list[Result] = []
            hits = 0
            for x in batch:
                if x is _DONE:
                    done = True
                    continue
                kind, payload = x
                if kind == "error":
                    raise payload
                if kind == "hit":
                    hits += 1
                else:
                    ks = keys[payload.id]
                    entries.append((ks.pop(0), payload))
                    if not ks:
                        del keys[payload.id]
                ready.append(payload)
            misses = sum(1 for x in batch if x is not _DONE and x[0] == "miss")
            if entries:
                await asyncio.to_thread(cache.append, entries)
                st.journaled += len(entries)
                st.batches += 1
            for _ in range(misses):
                miss_slots.release()
            for _ in range(hits):
                hit_slots.release()
            for r in ready:
                yield r
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
