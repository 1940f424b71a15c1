"""Engine client against a loopback fake OpenAI-compatible server (pretrainlab.engines.fake_server)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

pytest.importorskip("openai")

from pretrainlab.engines import ClientConfig, EndpointSpec, EngineClient, Request, classify_error, dumps_stats
from pretrainlab.engines.client_errors import OVERLOAD_REASONS, RETRY_REASONS, _retry_after
from pretrainlab.engines.fake_server import FakeServer, FaultSchedule


def make_items(n: int, prefix: str = "it"):
    for i in range(n):
        yield {
            "id": f"{prefix}{i}",
            "messages": [{"role": "user", "content": f"[[id={prefix}{i}]] tell me about {i}"}],
            "max_tokens": 16,
        }


def expected_tokens(item_id: str) -> tuple[int, int]:
    content = f"[[id={item_id}]] tell me about {item_id[2:]}"
    return len(content.split()), len(("echo: " + content).split())


def drive(client: EngineClient, source) -> list:
    async def go():
        async with client:
            return [r async for r in client.run(source)]

    return asyncio.run(go())


def spec(srv: FakeServer, **kw) -> EndpointSpec:
    return EndpointSpec(base_url=srv.base_url, model="fake", **kw)


# (a) ----------------------------------------------------------------------------------------------------


def test_healthy_server_all_ok_and_usage_summed():
    progress = []
    with FakeServer() as srv:
        client = EngineClient(
            spec(srv, max_concurrency=16),
            ClientConfig(timeout_s=10),
            progress=lambda s: progress.append(s.yielded),
        )
        results = drive(client, make_items(300))
        records = srv.snapshot()
    ids = [r.id for r in results]
    assert len(ids) == 300 and set(ids) == {f"it{i}" for i in range(300)}
    assert all(r.ok and r.error is None and r.attempts == 1 for r in results)
    assert all(r.text and r.text.startswith("echo: ") and r.finish_reason == "stop" for r in results)
    for r in results:
        assert (r.prompt_tokens, r.completion_tokens) == expected_tokens(r.id)
    st = client.stats
    assert st.ok == 300 and not st.dropped and not st.retries and st.attempts == 300 == len(records)
    assert st.prompt_tokens == sum(expected_tokens(i)[0] for i in ids)
    assert st.completion_tokens == sum(expected_tokens(i)[1] for i in ids)
    assert st.items_per_s > 0 and st.tokens_per_s > 0
    ep = st.endpoints[spec(srv).label]
    assert ep.max_limit_seen > 4  # additive increase happened (started at 4)
    assert progress and progress[-1] == 300


# (b) ----------------------------------------------------------------------------------------------------

RETRY_AFTER_S = 0.8
GRACE_S = 0.25  # requests already on the wire when the 429 was sent may still arrive this late


def test_fault_server_nothing_lost_retries_counted_retry_after_honoured():
    schedule = FaultSchedule(
        seed=3,
        rates={"rate_limit": 0.08, "server_error": 0.08, "slow": 0.04, "malformed": 0.07, "truncated": 0.07},
        retry_after={25: RETRY_AFTER_S, 150: RETRY_AFTER_S},
        slow_delay=1.0,
    )
    cfg = ClientConfig(timeout_s=0.4, max_attempts=6, backoff_base_s=0.02, backoff_max_s=0.3, seed=1)
    n = 200
    with FakeServer(schedule) as srv:
        client = EngineClient(spec(srv, max_concurrency=16, initial_concurrency=8), cfg)
        results = drive(client, make_items(n))
        records = srv.snapshot()
    st = client.stats

    # every item ends exactly once, ok or a counted drop with a reason
    ids = [r.id for r in results]
    assert len(ids) == n and set(ids) == {f"it{i}" for i in range(n)}
    for r in results:
        assert r.ok or (r.error in RETRY_REASONS and "gave up after 6 attempts" in r.message), r
    assert st.ok == sum(r.ok for r in results)
    assert st.ok + sum(st.dropped.values()) == n
    assert Counter(r.error for r in results if not r.ok) == st.dropped
    assert st.attempts == len(records) == sum(r.attempts for r in results)

    # every fault the server served was seen by the client as a retry or as the final drop of its item
    served = Counter(rec.served for rec in records)
    reason_of = {"rate_limit": "rate_limit", "server_error": "server_error", "slow": "timeout"}
    reason_of.update({"malformed": "malformed", "truncated": "truncated"})
    for kind, reason in reason_of.items():
        assert served[kind] > 0, f"schedule served no {kind}"
        assert st.retries[reason] + st.dropped[reason] == served[kind], (kind, st.retries, st.dropped)
    assert served["ok"] == st.ok

    # attempts per item match what the server saw per tag
    per_tag = Counter(rec.tag for rec in records)
    assert all(per_tag[r.id] == r.attempts for r in results)

    # Retry-After: after each 429 carrying it, the endpoint sent nothing for that long
    ra_events = [rec for rec in records if rec.retry_after is not None]
    assert len(ra_events) == 2
    for ev in ra_events:
        during = [x for x in records if ev.arrival + GRACE_S < x.arrival < ev.arrival + ev.retry_after]
        assert not during, f"{len(during)} requests arrived during a {ev.retry_after}s Retry-After pause"
        assert any(x.arrival >= ev.arrival + ev.retry_after for x in records)  # and it resumed after
    ep = st.endpoints[spec(srv).label]
    assert ep.paused_s >= 2 * RETRY_AFTER_S - 1e-6
    assert ep.decreases >= 1  # overload halved the concurrency at least once
    assert set(ep.errors) <= OVERLOAD_REASONS | {"malformed"}


# (c) ----------------------------------------------------------------------------------------------------


def test_two_endpoints_share_the_load():
    with FakeServer() as a, FakeServer(latency=0.002) as b:
        client = EngineClient(
            [spec(a, max_concurrency=8), spec(b, max_concurrency=8)], ClientConfig(timeout_s=10)
        )
        results = drive(client, make_items(200))
        na, nb = len(a.snapshot()), len(b.snapshot())
    assert len(results) == 200 and all(r.ok for r in results)
    assert na + nb == 200 and min(na, nb) >= 40, (na, nb)
    by_ep = Counter(r.endpoint for r in results)
    assert set(by_ep) == {spec(a).label, spec(b).label}
    assert by_ep[spec(a).label] == na and by_ep[spec(b).label] == nb
    assert sum(e.requests for e in client.stats.endpoints.values()) == 200


# (d) ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,reason", [(400, "bad_request"), (401, "auth"), (404, "not_found"), (422, "unprocessable")]
)
def test_client_errors_drop_immediately_without_retry(status, reason):
    bad = Request("bad", [{"role": "user", "content": f"[[id=bad]] [[status={status}]] please"}])
    with FakeServer() as srv:
        client = EngineClient(spec(srv), ClientConfig(timeout_s=10))
        results = drive(client, [bad, *make_items(5)])
        records = srv.snapshot()
    (dropped,) = [r for r in results if r.id == "bad"]
    assert not dropped.ok and dropped.error == reason and dropped.attempts == 1
    assert str(status) in dropped.message
    assert sum(rec.tag == "bad" for rec in records) == 1
    assert client.stats.dropped == {reason: 1} and not client.stats.retries
    assert sum(r.ok for r in results) == 5


# (e) ----------------------------------------------------------------------------------------------------


def test_input_consumed_lazily_within_window():
    pulled = 0

    def source():
        nonlocal pulled
        for item in make_items(100_000):
            pulled += 1
            yield item

    window, take = 32, 1_000
    ahead: list[int] = []
    with FakeServer() as srv:
        client = EngineClient(spec(srv, max_concurrency=16), ClientConfig(timeout_s=10, window=window))

        async def go():
            got = 0
            async with client:
                gen = client.run(source())
                async for r in gen:
                    assert r.ok
                    got += 1
                    ahead.append(pulled - got)  # items pulled from the input but not yet handed back
                    if got == take:
                        break
                await gen.aclose()
            return got

        got = asyncio.run(go())
    assert got == take
    assert max(ahead) <= window
    assert pulled <= take + window  # 100k queued, about a thousand ever materialised
    assert client.stats.max_outstanding <= window
    assert client.stats.pulled == pulled


# (f) Retry-After at low concurrency ----------------------------------------------------------------------


async def _async_items(n: int):
    for item in make_items(n):
        yield item


def drive_bounded(client: EngineClient, source, limit_s: float = 5.0) -> list:
    """``drive`` that fails instead of hanging: a client that stops making progress times out."""

    async def go():
        async with client:
            return [r async for r in client.run(source)]

    try:
        return asyncio.run(asyncio.wait_for(go(), limit_s))
    except asyncio.TimeoutError:
        st = client.stats
        pytest.fail(f"client hung: pulled {st.pulled}, yielded {st.yielded}, attempts {st.attempts}")


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_retry_after_at_low_concurrency_never_hangs(concurrency):
    # regression: a retry (here after a 429 with Retry-After) made the loop wait on a timer, the async
    # source's feeder then re-checked the window before the yield that made room in it, and nothing woke
    # it again: loop and feeder both waited for good (every run at concurrency 1-2, often at 4)
    cfg = ClientConfig(timeout_s=10, backoff_base_s=0.05)
    for seed in range(3):
        for source in ("sync", "async"):
            n = 20 + 20 * seed
            with FakeServer(FaultSchedule(seed=seed, retry_after={2: 0.01})) as srv:
                client = EngineClient(spec(srv, max_concurrency=concurrency), cfg)
                items = make_items(n) if source == "sync" else _async_items(n)
                results = drive_bounded(client, items)
                records = srv.snapshot()
            ids = sorted(r.id for r in results)
            assert ids == sorted(f"it{i}" for i in range(n)), (concurrency, seed, source)
            assert all(r.ok for r in results)
            assert client.stats.attempts == len(records) == n + 1  # the one 429, retried once


@pytest.mark.parametrize("source", ["sync", "async"])
def test_retry_after_pauses_from_the_reply_and_resumes_within_the_limit(source):
    """Nothing is sent from the moment a 429 with Retry-After comes in until the pause is over (not only
    once the loop gets to it), and the client never has more requests in flight than its limit."""
    pause, conc, n = 0.3, 4, 40
    sends: list[float] = []  # when each request was started, client side
    received: list[float] = []  # when each 429 with Retry-After came in
    inflight, most = 0, 0
    with FakeServer(FaultSchedule(retry_after={1: pause, 12: pause})) as srv:
        client = EngineClient(
            spec(srv, max_concurrency=conc), ClientConfig(timeout_s=10, backoff_base_s=0.01)
        )
        completions = client.endpoints[0].client.chat.completions
        create = completions.create

        async def counted_create(**kw):
            nonlocal inflight, most
            sends.append(time.monotonic())
            inflight += 1
            most = max(most, inflight)
            try:
                return await create(**kw)
            except Exception as e:
                if getattr(e, "status_code", None) == 429 and e.response.headers.get("retry-after"):
                    received.append(time.monotonic())
                raise
            finally:
                inflight -= 1

        completions.create = counted_create
        results = drive_bounded(client, make_items(n) if source == "sync" else _async_items(n))
    assert sorted(r.id for r in results) == sorted(f"it{i}" for i in range(n)) and all(r.ok for r in results)
    assert len(received) == 2 and most <= conc
    for t in received:
        during = [round(s - t, 4) for s in sends if t <= s < t + pause]
        assert not during, f"sent {len(during)} requests into a {pause}s Retry-After pause: {during}"
        assert any(s >= t + pause for s in sends)  # and resumed after it
    assert client.stats.endpoints[spec(srv).label].paused_s == pytest.approx(2 * pause, abs=0.05)


# smaller pieces ------------------------------------------------------------------------------------------


def test_api_key_is_sent_but_never_stored(monkeypatch):
    secret = "sk-test-0123456789-secret"
    monkeypatch.setenv("PRETRAINLAB_TEST_LLM_KEY", secret)
    progress = []
    with FakeServer(expect_key=secret) as srv:
        s = spec(srv, api_key_env="PRETRAINLAB_TEST_LLM_KEY")
        client = EngineClient(
            s, ClientConfig(timeout_s=10), progress=lambda st: progress.append(dumps_stats(st))
        )
        results = drive(client, make_items(5))
    assert all(r.ok for r in results)  # the server checked the bearer token
    blob = (
        repr(s) + dumps_stats(client.stats) + json.dumps([r.to_dict() for r in results]) + "".join(progress)
    )
    assert secret not in blob


def test_async_source_and_invalid_items():
    async def source():
        yield {"id": "x", "oops": True}  # no messages
        for item in make_items(3):
            yield item

    with FakeServer() as srv:
        client = EngineClient(spec(srv), ClientConfig(timeout_s=10))
        results = drive(client, source())
    assert sorted(r.id for r in results) == ["it0", "it1", "it2", "x"]
    (bad,) = [r for r in results if not r.ok]
    assert bad.id == "x" and bad.error == "invalid_item" and bad.attempts == 0


def test_classify_and_retry_after_parsing():
    assert classify_error(json.JSONDecodeError("x", "{", 0)).reason == "malformed"
    assert classify_error(RuntimeError("bug")).retry is False
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert _retry_after({}) is None and _retry_after({"retry-after": "soon"}) is None
