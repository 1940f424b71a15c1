"""A tiny loopback OpenAI-compatible server for tests and benchmarks of the engine client.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to serve ``POST /v1/chat/completions``
with a valid ``chat.completion`` JSON body including ``usage``. A seeded :class:`FaultSchedule` can make it
answer with 429 (optionally with ``Retry-After``), 500, responses slower than the client's timeout,
malformed JSON, or truncated bodies (``Content-Length`` larger than what is sent before the connection is
closed). A message containing ``[[status=NNN]]`` is answered with that status, whatever the schedule says.

The server runs its own event loop in a daemon thread, so it can be used from synchronous tests that drive
the client with ``asyncio.run``. Every request is recorded (arrival time on ``time.monotonic()``, fault
served, the item tag found in the prompt, and whether an ``Authorization`` header was present).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Fault", "FaultSchedule", "FakeServer", "RequestRecord"]

_STATUS_RE = re.compile(r"\[\[status=(\d{3})\]\]")
_TAG_RE = re.compile(r"\[\[id=([^\]]+)\]\]")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}
_REASONS.update({429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"})


@dataclass(frozen=True)
class Fault:
    """One fault to serve. ``kind`` is one of rate_limit, server_error, slow, malformed, truncated."""

    kind: str
    retry_after: float | None = None  # rate_limit only: seconds sent in the Retry-After header
    delay: float = 0.0  # slow only: seconds to sleep before answering


@dataclass
class FaultSchedule:
    """Seeded, per-arrival fault plan: request number ``i`` (0-based, in arrival order) gets ``fault(i)``.

    ``rates`` maps a fault kind to its probability; ``retry_after`` maps arrival numbers to a Retry-After
    value for a 429 served at exactly that arrival (these override the random draw).
    """

    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    retry_after: dict[int, float] = field(default_factory=dict)
    slow_delay: float = 1.0

    def fault(self, i: int) -> Fault | None:
        if i in self.retry_after:
            return Fault("rate_limit", retry_after=self.retry_after[i])
        u = random.Random(self.seed * 1_000_003 + i).random()
        acc = 0.0
        for kind in sorted(self.rates):
            acc += self.rates[kind]
            if u < acc:
                return Fault(kind, delay=self.slow_delay if kind == "slow" else 0.0)
        return None


@dataclass(frozen=True)
class RequestRecord:
    arrival: float  # time.monotonic() when the request was fully read
    path: str
    tag: str | None  # the [[id=...]] tag found in the last message, if any
    served: str  # "ok", a fault kind, or "status:NNN"
    retry_after: float | None
    authorized: bool


class FakeServer:
    """``with FakeServer(schedule) as srv: ... srv.base_url ...`` -- see the module docstring."""

    def __init__(
        self,
        schedule: FaultSchedule | None = None,
        *,
        latency: float = 0.0,
        expect_key: str | None = None,
        reply: Callable[[dict], str] | None = None,
    ):
        self.schedule = schedule or FaultSchedule()
        self.reply = reply  # the assistant's text for a request body; default "echo: <last message>"
        self.latency = latency
        self.expect_key = expect_key  # if set, requests whose bearer token differs get a 401
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def _run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=_run, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def _shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what happened ---------------------------------------------------------------------------------

    def served(self) -> Counter:
        with self._lock:
            return Counter(r.served for r in self.records)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)

    # -- HTTP ------------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self._respond(method, path, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _respond(self, method: str, path: str, headers: dict, body: bytes, writer) -> bool:
        arrival = time.monotonic()
        authorized = "authorization" in headers
        if not path.rstrip("/").endswith("/chat/completions") or method != "POST":
            self._record(arrival, path, None, "status:404", None, authorized)
            return await self._send(writer, 404, {"error": {"message": "not found", "type": "not_found"}})
        try:
            req = json.loads(body)
            last = str(req["messages"][-1].get("content", ""))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self._record(arrival, path, None, "status:400", None, authorized)
            err = {"error": {"message": "bad json", "type": "invalid_request"}}
            return await self._send(writer, 400, err)
        tag_m = _TAG_RE.search(last)
        tag = tag_m.group(1) if tag_m else None
        if self.expect_key is not None and headers.get("authorization") != f"Bearer {self.expect_key}":
            self._record(arrival, path, tag, "status:401", None, authorized)
            return await self._send(writer, 401, {"error": {"message": "bad key", "type": "auth"}})
        forced = _STATUS_RE.search(last)
        with self._lock:
            index = len(self.records)
            fault = None if forced else self.schedule.fault(index)
            served = f"status:{forced.group(1)}" if forced else (fault.kind if fault else "ok")
            ra = fault.retry_after if fault else None
            self.records.append(RequestRecord(arrival, path, tag, served, ra, authorized))
        if forced:
            code = int(forced.group(1))
            return await self._send(writer, code, {"error": {"message": f"forced {code}", "type": "forced"}})
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is None:
            return await self._send(writer, 200, self._completion(req, last))
        if fault.kind == "rate_limit":
            extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            err = {"error": {"message": "rate limited", "type": "rate_limit"}}
            return await self._send(writer, 429, err, extra)
        if fault.kind == "server_error":
            return await self._send(writer, 500, {"error": {"message": "boom", "type": "server_error"}})
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await self._send(writer, 200, self._completion(req, last))
        if fault.kind == "malformed":
            raw = json.dumps(self._completion(req, last)).encode()
            return await self._send_raw(writer, 200, raw[: len(raw) // 2])
        if fault.kind == "truncated":
            raw = json.dumps(self._completion(req, last)).encode()
            head = _head(200, len(raw), {})
            writer.write(head + raw[: len(raw) // 3])
            await writer.drain()
            return False  # close with the body incomplete
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _completion(self, req: dict, last: str) -> dict:
        return _completion(req, last, self.reply)

    def _record(self, *args) -> None:
        with self._lock:
            self.records.append(RequestRecord(*args))

    async def _send(self, writer, code: int, payload: dict, extra: dict | None = None) -> bool:
        return await self._send_raw(writer, code, json.dumps(payload).encode(), extra)

    async def _send_raw(self, writer, code: int, raw: bytes, extra: dict | None = None) -> bool:
        writer.write(_head(code, len(raw), extra or {}) + raw)
        await writer.drain()
        return True


def _head(code: int, length: int, extra: dict) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Status')}", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _completion(req: dict, last: str, reply: Callable[[dict], str] | None = None) -> dict:
    n = int(req.get("n") or 1)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in req["messages"])
    text = reply(req) if reply is not None else "echo: " + last
    completion_tokens = len(text.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.get("model", "fake"),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
        },
    }
