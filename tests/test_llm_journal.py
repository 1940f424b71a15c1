"""Request journal (pretrainlab.engines.journal) against the loopback fake server: re-runs send
nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("openai")

from pretrainlab.engines import ClientConfig, EndpointSpec, EngineClient
from pretrainlab.engines.fake_server import FakeServer
from pretrainlab.engines.journal import JOURNAL_NAME, CachedRunStats, RequestCache, cached_run, request_key


def make_items(n: int, prefix: str = "it", start: int = 0):
    return [
        {
            "id": f"{prefix}{i}",
            "messages": [{"role": "user", "content": f"[[id={prefix}{i}]] tell me about {i}"}],
            "max_tokens": 16,
            "seed": 1,
        }
        for i in range(start, start + n)
    ]


def client_for(srv: FakeServer, **cfg) -> EngineClient:
    spec = EndpointSpec(base_url=srv.base_url, model="fake", max_concurrency=8)
    return EngineClient(spec, ClientConfig(timeout_s=10, **cfg))


def run_cached(srv: FakeServer, items, cache: RequestCache, **cfg) -> tuple[list, CachedRunStats]:
    st = CachedRunStats()

    async def go():
        async with client_for(srv, **cfg) as client:
            return [r async for r in cached_run(client, items, cache, stats=st)]

    return asyncio.run(go()), st


def tags(records) -> Counter:
    return Counter(r.tag for r in records)


def stable(r) -> dict:
    """What is the same for an item whatever run produced it (latency/attempts/endpoint vary)."""
    d = r.to_dict()
    return {k: d[k] for k in ("id", "ok", "text", "choices", "finish_reason", "prompt_tokens", "error")}


# keys -----------------------------------------------------------------------------------------------------


def test_request_key_canonical():
    msgs = [{"role": "user", "content": "hi"}]
    k = request_key("m", msgs, {"temperature": 0.5, "seed": 3, "max_tokens": 8})
    assert k == request_key(
        "m", [{"content": "hi", "role": "user"}], {"max_tokens": 8, "seed": 3, "temperature": 0.5}
    )
    assert len(k) == 32 and set(k) <= set("0123456789abcdef")
    assert k != request_key("m2", msgs, {"temperature": 0.5, "seed": 3, "max_tokens": 8})  # model
    assert k != request_key("m", msgs, {"temperature": 0.5, "seed": 4, "max_tokens": 8})  # seed
    assert k != request_key("m", msgs, {"temperature": 0.5, "seed": 3})  # a param dropped
    assert k != request_key(
        "m", [{"role": "user", "content": "hi!"}], {"temperature": 0.5, "seed": 3, "max_tokens": 8}
    )
    assert request_key("m", msgs) == request_key("m", msgs, {})


# (a) + (b) ------------------------------------------------------------------------------------------------


def test_rerun_sends_nothing_and_new_items_only(tmp_path):
    items = make_items(200)
    with FakeServer() as srv:
        with RequestCache(tmp_path / "c") as cache:
            first, st1 = run_cached(srv, items, cache)
        assert len(srv.snapshot()) == 200 and st1.sent == 200 and st1.hits == 0 and st1.journaled == 200
        assert st1.batches <= 200
        with RequestCache(tmp_path / "c") as cache:  # reopened from disk
            assert len(cache) == 200 and cache.lines == 200 and cache.truncated_bytes == 0
            second, st2 = run_cached(srv, items, cache)
        assert len(srv.snapshot()) == 200, "the second run sent requests"
        assert st2.hits == 200 and st2.sent == 0 and st2.journaled == 0
        assert sorted((r.to_dict() for r in first), key=lambda d: d["id"]) == sorted(
            (r.to_dict() for r in second), key=lambda d: d["id"]
        )
        # (b) 50 new items, and the old ones in another order: only the 50 are sent
        more = make_items(50, start=200) + items[::-1]
        with RequestCache(tmp_path / "c") as cache:
            third, st3 = run_cached(srv, more, cache)
            assert len(cache) == 250
        recs = srv.snapshot()
    assert len(recs) == 250 and st3.sent == 50 and st3.hits == 200
    assert tags(recs[200:]) == Counter(f"it{i}" for i in range(200, 250))
    assert sorted(r.id for r in third) == sorted(f"it{i}" for i in range(250))
    assert all(r.ok and r.text == f"echo: [[id={r.id}]] tell me about {r.id[2:]}" for r in third)


def test_changed_params_or_model_are_new_keys(tmp_path):
    items = make_items(20)
    with FakeServer() as srv, RequestCache(tmp_path) as cache:
        run_cached(srv, items, cache)
        changed = [{**it, "seed": 2} if i % 2 else it for i, it in enumerate(items)]
        _, st = run_cached(srv, changed, cache)
        assert st.sent == 10 and st.hits == 10

        async def other_model():
            spec = EndpointSpec(base_url=srv.base_url, model="fake-2")
            async with EngineClient(spec, ClientConfig(timeout_s=10)) as client:
                return [r async for r in cached_run(client, items, cache)]

        assert len(asyncio.run(other_model())) == 20
        assert len(srv.snapshot()) == 20 + 10 + 20


def test_drops_journaled_permanent_kept_transient_retried(tmp_path):
    items = make_items(6)
    items[1]["messages"][0]["content"] += " [[status=400]]"
    items[2]["messages"][0]["content"] += " [[status=422]]"
    items[3]["messages"][0]["content"] += " [[status=500]]"
    items[4]["messages"][0]["content"] += " [[status=401]]"
    with FakeServer() as srv:
        with RequestCache(tmp_path) as cache:
            res, st = run_cached(srv, items, cache, max_attempts=1)
        by = {r.id: r for r in res}
        assert [by[f"it{i}"].error for i in range(6)] == [
            None,
            "bad_request",
            "unprocessable",
            "server_error",
            "auth",
            None,
        ]
        assert st.journaled == 6
        n = len(srv.snapshot())
        with RequestCache(tmp_path) as cache:  # default policy: 4xx about the request is final
            res2, st2 = run_cached(srv, items, cache, max_attempts=1)
        assert st2.hits == 4 and st2.sent == 2 and st2.resent_dropped == 2
        assert tags(srv.snapshot()[n:]) == Counter({"it3": 1, "it4": 1})
        assert {r.id: r.error for r in res2} == {r.id: r.error for r in res}
        n = len(srv.snapshot())
        with RequestCache(tmp_path, retry_permanent=True) as cache:
            _, st3 = run_cached(srv, items, cache, max_attempts=1)
        assert st3.hits == 2 and st3.sent == 4
        assert tags(srv.snapshot()[n:]) == Counter({"it1": 1, "it2": 1, "it3": 1, "it4": 1})


def test_invalid_items_answered_not_journaled(tmp_path):
    items = make_items(3) + [{"id": "bad"}]  # no messages
    with FakeServer() as srv, RequestCache(tmp_path) as cache:
        res, st = run_cached(srv, items, cache)
        assert sorted(r.id for r in res) == ["bad", "it0", "it1", "it2"]
        assert [r.error for r in res if r.id == "bad"] == ["invalid_item"]
        assert st.journaled == 3 and len(cache) == 3


def test_same_content_other_id_answered_with_its_own_id(tmp_path):
    items = make_items(3)
    twin = {**items[0], "id": "twin"}
    with FakeServer() as srv, RequestCache(tmp_path) as cache:
        run_cached(srv, items, cache)
        res, st = run_cached(srv, [twin, items[0]], cache)
        assert st.hits == 2 and len(srv.snapshot()) == 3
        assert sorted(r.id for r in res) == ["it0", "twin"] and len({r.text for r in res}) == 1


def test_second_open_is_refused(tmp_path):
    with RequestCache(tmp_path):
        with pytest.raises(RuntimeError, match="open in another process"):
            RequestCache(tmp_path)
    RequestCache(tmp_path).close()  # released on close


# (d) ------------------------------------------------------------------------------------------------------


def test_truncated_last_line_reloads_cleanly(tmp_path):
    items = make_items(10)
    with FakeServer() as srv:
        with RequestCache(tmp_path) as cache:
            run_cached(srv, items, cache)
        path = tmp_path / JOURNAL_NAME
        data = path.read_bytes()
        assert data.count(b"\n") == 10
        lines = data.splitlines(keepends=True)
        torn = b"".join(lines[:9]) + lines[9][: len(lines[9]) // 2]
        path.write_bytes(torn)
        with RequestCache(tmp_path) as cache:
            assert len(cache) == 9 and cache.lines == 9 and cache.corrupt == 0
            assert cache.truncated_bytes == len(lines[9]) // 2
            assert path.read_bytes() == b"".join(lines[:9])  # cut back to the last full line
            _, st = run_cached(srv, items, cache)
            assert st.sent == 1 and st.hits == 9
        torn_id = json.loads(lines[9])["id"]  # the journal is in completion order
        assert tags(srv.snapshot()[10:]) == Counter({torn_id: 1})
        # a garbage line in the middle is skipped (and counted), the ones after it are kept
        good = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(good[:3]) + b"{not json\n" + b"".join(good[3:]) + b'{"key": "x", "id"')
        with RequestCache(tmp_path) as cache:
            assert (
                len(cache) == 10 and cache.corrupt == 1 and cache.truncated_bytes == len(b'{"key": "x", "id"')
            )
            _, st = run_cached(srv, items, cache)
            assert st.sent == 0
        assert path.read_bytes().endswith(b"\n")


# (c) ------------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pretrainlab.engines import ClientConfig, EndpointSpec, EngineClient
    from pretrainlab.engines.journal import RequestCache, cached_run

    url, cache_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    items = [
        {"id": f"it{i}", "messages": [{"role": "user", "content": f"[[id=it{i}]] tell me about {i}"}],
         "max_tokens": 16, "seed": 1}
        for i in range(n)
    ]

    async def main():
        spec = EndpointSpec(base_url=url, model="fake", max_concurrency=8)
        async with EngineClient(spec, ClientConfig(timeout_s=10)) as client:
            with RequestCache(cache_dir) as cache:
                async for _ in cached_run(client, items, cache):
                    pass

    asyncio.run(main())
    """
)

N_KILL = 300
MIN_BEFORE_KILL = 100


def _journal_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill9_resume_resends_only_in_flight(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cache_dir = tmp_path / "killed"
    journal = cache_dir / JOURNAL_NAME
    items = make_items(N_KILL)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    # 30 ms per request at <= 8 concurrent: >= 1.1 s for the whole run, so the kill lands mid-run
    with FakeServer(latency=0.03) as srv:
        child = subprocess.Popen(
            [sys.executable, str(script), srv.base_url, str(cache_dir), str(N_KILL)], env=env
        )
        try:
            deadline = time.monotonic() + 20
            while _journal_lines(journal) < MIN_BEFORE_KILL:
                assert child.poll() is None, f"child exited early with {child.returncode}"
                assert time.monotonic() < deadline, "child too slow"
                time.sleep(0.005)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(10)
        assert child.returncode == -signal.SIGKILL
        time.sleep(0.1)  # let the server log requests that were still on the wire
        before = srv.snapshot()
        sent_by_child = tags(before)
        assert max(sent_by_child.values()) == 1  # no faults: each sent once

        with RequestCache(cache_dir) as cache:
            journaled = {e.id for e in cache.index.values()}
            at_kill = len(cache)
            in_flight = set(sent_by_child) - journaled  # seen by the server, result not on disk
            assert journaled <= set(sent_by_child)
            assert at_kill >= MIN_BEFORE_KILL and at_kill < N_KILL
            client_window = client_for(srv).window
            resumed, st = run_cached(srv, items, cache)
            final = {k: r for k, r in cache.results().items()}
        after = srv.snapshot()[len(before) :]

        # an uninterrupted run on a fresh journal, for comparison
        with RequestCache(tmp_path / "clean") as clean_cache:
            clean, _ = run_cached(srv, items, clean_cache)

    sent_again = tags(after)
    # the resumed run sends exactly what is not on disk, once each
    assert set(sent_again) == {it["id"] for it in items} - journaled and max(sent_again.values()) == 1
    assert st.hits == at_kill and st.sent == N_KILL - at_kill
    # over both runs no request went out twice, except ones in flight when the child died
    total = sent_by_child + sent_again
    resent = {t for t, c in total.items() if c > 1}
    assert resent == in_flight
    # the guaranteed bound is client.window + max_pending (32); what is seen is the in-flight count (~8)
    assert len(resent) <= client_window + 32
    print(
        f"\n[kill-9] journaled at kill={at_kill}, server had seen {len(sent_by_child)}, re-sent {len(resent)}"
    )
    # final result set: exactly the 300 ids once each, equal to the uninterrupted run's
    ids = [r.id for r in resumed]
    assert len(ids) == N_KILL and len(set(ids)) == N_KILL
    assert len(final) == N_KILL and sorted(r.id for r in final.values()) == sorted(it["id"] for it in items)
    assert sorted(map(stable, final.values()), key=lambda d: d["id"]) == sorted(
        map(stable, clean), key=lambda d: d["id"]
    )
    assert sorted(map(stable, resumed), key=lambda d: d["id"]) == sorted(
        map(stable, clean), key=lambda d: d["id"]
    )
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())
