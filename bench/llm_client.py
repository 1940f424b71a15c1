"""LLM engine client: pretrainlab's EngineClient against a bare asyncio + openai loop and NeMo Data Designer.

Run: .venv/bin/python bench/llm_client.py [--items N] [--rounds R] [--latency S] [--quick] [--json OUT]

Everything talks to one loopback ``FakeServer`` (pretrainlab.engines.fake_server) started in a *separate*
process, so the client process measures only client overhead; the server sleeps ``--latency`` seconds per
request (an engine's time to answer) and echoes the prompt, so a ``--words``-word prompt gives a completion
of about the same length. Three parts, all in one run:

1. Throughput. A bare ``openai.AsyncOpenAI`` worker pool (C workers sharing one lazy iterator) is swept over
   ``--sweep`` concurrencies to find its best; then rounds alternate bare (at that best C), EngineClient with
   its concurrency pinned at C (``initial_concurrency = max_concurrency = C``), EngineClient adaptive (AIMD
   from the default start of 4 up to ``max(--sweep)``), and Data Designer at ``max_parallel_requests = C``.
   Medians over rounds; the ratio is the median of per-round ratios.
2. NeMo Data Designer (``pip install data-designer``), run by ``--dd-python`` (a separate venv) in its own
   process: one sampler column (uuid) and one LLM-text column, N records, a custom ``openai`` provider whose
   endpoint is the loopback server. Its time is from ``create()`` to the last row group written (health
   check skipped, profiling after that not counted); ``create()`` end to end is reported as well.
3. Memory with 100k queued items, each arm in a fresh process: EngineClient reading a 100k-item generator,
   against a naive ``asyncio.gather`` over 100k coroutines (a semaphore bounds the concurrency) built from
   a materialised list of 100k requests. Peak RSS (``ru_maxrss``) and its growth over the RSS just before
   the run.

CPU figures: ``client CPU ms/item`` is the client process's CPU time per request (the figure that shows the
client's own cost); ``server CPU`` is the fake server process's share, read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODEL = "fake"
DD_DEFAULT = "/tmp/dd-venv/bin/python"
CLIENT_FILE: str | None = None  # --client-file: benchmark this copy of client.py instead of the installed one
_client_mod: Any = None


def client_module() -> Any:
    """pretrainlab.engines.client, or the file given by --client-file (e.g. an older revision, for
    comparison)."""
    global _client_mod
    if _client_mod is None:
        if CLIENT_FILE:
            spec = importlib.util.spec_from_file_location("bench_client_under_test", CLIENT_FILE)
            assert spec is not None and spec.loader is not None
            _client_mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = _client_mod  # dataclasses look their module up
            spec.loader.exec_module(_client_mod)
        else:
            import pretrainlab.engines.client as _client_mod
    return _client_mod


SERVER_CODE = """
import sys
from pretrainlab.engines.fake_server import FakeServer
srv = FakeServer(latency=float(sys.argv[1])).start()
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""


# --------------------------------------------------------------------------------------------------------
# workload and server
# --------------------------------------------------------------------------------------------------------


def prompt(i: int, words: int) -> str:
    return f"Item {i}: repeat these words. " + " ".join(f"w{(i * 31 + j * 7) % 9973}" for j in range(words))


def items(n: int, words: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "id": f"q{i}",
            "messages": [{"role": "user", "content": prompt(i, words)}],
            "params": {"max_tokens": 2 * words + 64, "temperature": 0.0},
        }


class Server:
    """The FakeServer in a child process; ``cpu()`` is its CPU seconds so far."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(latency)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------------------------------------
# the arms (each returns items, tokens, seconds)
# --------------------------------------------------------------------------------------------------------


async def bare(base_url: str, n: int, words: int, conc: int) -> dict[str, Any]:
    """C workers pulling from one shared lazy iterator, one AsyncOpenAI client (SDK retries off)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120.0)
    source = items(n, words)
    count = {"ok": 0, "tokens": 0}

    async def worker() -> None:
        for item in source:
            c = await client.chat.completions.create(model=MODEL, messages=item["messages"], **item["params"])
            count["ok"] += 1
            count["tokens"] += c.usage.prompt_tokens + c.usage.completion_tokens

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    seconds = time.perf_counter() - t0
    await client.close()
    return {"ok": count["ok"], "tokens": count["tokens"], "seconds": seconds}


async def bare_tasks(base_url: str, n: int, words: int, conc: int) -> dict[str, Any]:
    """A Task per request, spawned lazily while a semaphore has room (no worker reuse)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120.0)
    sem = asyncio.Semaphore(conc)
    count = {"ok": 0, "tokens": 0}
    tasks: set[asyncio.Task] = set()

    async def one(item: dict[str, Any]) -> None:
        try:
            c = await client.chat.completions.create(model=MODEL, messages=item["messages"], **item["params"])
            count["ok"] += 1
            count["tokens"] += c.usage.prompt_tokens + c.usage.completion_tokens
        finally:
            sem.release()

    t0 = time.perf_counter()
    for item in items(n, words):
        await sem.acquire()
        task = asyncio.create_task(one(item))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    seconds = time.perf_counter() - t0
    await client.close()
    return {"ok": count["ok"], "tokens": count["tokens"], "seconds": seconds}


async def ours(base_url: str, n: int, words: int, conc: int, initial: int) -> dict[str, Any]:
    m = client_module()
    spec = m.EndpointSpec(base_url=base_url, model=MODEL, max_concurrency=conc, initial_concurrency=initial)
    async with m.EngineClient(spec, m.ClientConfig(timeout_s=120.0)) as client:
        ok = inflight = 0
        t0 = time.perf_counter()
        async for r in client.run(items(n, words)):
            ok += r.ok
            inflight += client.stats.endpoints[r.endpoint].inflight
        seconds = time.perf_counter() - t0
        s = client.stats
        ep = next(iter(s.endpoints.values()))
        return {
            "ok": ok,
            "tokens": s.prompt_tokens + s.completion_tokens,
            "seconds": seconds,
            "final_limit": ep.limit,
            "max_limit_seen": ep.max_limit_seen,
            "mean_inflight": inflight / max(ok, 1),  # requests in flight when a result is handed over
        }


def timed(server: Server, fn: Any, *args: Any) -> dict[str, Any]:
    """Run one in-process arm; add client and server CPU time and the rates."""
    cpu0, scpu0 = time.process_time(), server.cpu()
    out = asyncio.run(fn(server.base_url, *args))
    out["client_cpu_s"] = time.process_time() - cpu0
    out["server_cpu_s"] = server.cpu() - scpu0
    return rates(out)


def rates(out: dict[str, Any]) -> dict[str, Any]:
    out["items_per_s"] = out["ok"] / out["seconds"]
    out["tokens_per_s"] = out["tokens"] / out["seconds"]
    if out.get("client_cpu_s") is not None:
        out["client_cpu_ms_per_item"] = 1000 * out["client_cpu_s"] / max(out["ok"], 1)
    return out


def profile(server: Server, fn: Any, *args: Any) -> dict[str, Any]:
    """One run under cProfile: Python calls per item, and httpcore's idle-connection readability checks
    (``is_socket_readable``, done for every idle pooled connection each time the pool assigns or releases
    a connection) per item."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    out = timed(server, fn, *args)
    prof.disable()
    st = pstats.Stats(prof)
    checks = sum(v[1] for k, v in st.stats.items() if k[2] == "is_socket_readable")  # type: ignore[attr-defined]
    n = max(out["ok"], 1)
    return {"calls_per_item": st.total_calls / n, "readable_checks_per_item": checks / n, **out}  # type: ignore[attr-defined]


def data_designer(args: argparse.Namespace, server: Server, conc: int) -> dict[str, Any] | None:
    """One Data Designer run in the other venv's python, this file in --dd-worker mode."""
    cmd = [args.dd_python, __file__, "--dd-worker", "--port", str(server.port), "--items", str(args.items)]
    cmd += ["--words", str(args.words), "--dd-concurrency", str(conc)]
    scpu0 = server.cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"data-designer: failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        return None
    out = json.loads(lines[-1])
    out["server_cpu_s"] = server.cpu() - scpu0
    return rates(out)


def dd_worker(args: argparse.Namespace) -> None:
    """Runs under the Data Designer venv: N records of one LLM-text column; prints one JSON line."""
    import logging
    import tempfile

    import data_designer.config as dd
    from data_designer.interface import DataDesigner

    logging.basicConfig(level=logging.WARNING)
    provider = dd.ModelProvider(
        name="loopback", endpoint=f"http://127.0.0.1:{args.port}/v1", provider_type="openai", api_key="EMPTY"
    )
    model = dd.ModelConfig(
        alias="fake",
        model=MODEL,
        provider="loopback",
        skip_health_check=True,
        inference_parameters=dd.ChatCompletionInferenceParams(
            max_parallel_requests=args.dd_concurrency, max_tokens=2 * args.words + 64, temperature=0.0
        ),
    )
    words = " ".join(f"w{(j * 7) % 9973}" for j in range(args.words))
    with tempfile.TemporaryDirectory() as tmp:
        designer = DataDesigner(artifact_path=tmp, model_providers=[provider])
        designer.set_run_config(dd.RunConfig(otel_metrics_port=None))
        builder = dd.DataDesignerConfigBuilder(model_configs=[model])
        builder.add_column(
            dd.SamplerColumnConfig(name="i", sampler_type="uuid", params=dd.UUIDSamplerParams())
        )
        builder.add_column(
            dd.LLMTextColumnConfig(
                name="out", prompt="Item {{ i }}: repeat these words. " + words, model_alias="fake"
            )
        )
        batches: list[tuple[float, float]] = []  # (wall, CPU) when each row group was written
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        result = designer.create(
            builder,
            num_records=args.items,
            dataset_name="bench",
            on_batch_complete=lambda _: batches.append((time.perf_counter(), time.process_time())),
        )
        total = time.perf_counter() - t0
        df = result.load_dataset()
    gen, gen_cpu = (batches[-1][0] - t0, batches[-1][1] - cpu0) if batches else (total, None)
    # the fake server counts whitespace-separated words: the completion is "echo: " + the prompt, so the
    # prompt has one word fewer than the completion (Data Designer sends content as a list of parts, whose
    # repr is what the server echoes)
    completion = int(df["out"].map(lambda s: len(str(s).split())).sum())
    out = {"ok": int(df["out"].notna().sum()), "tokens": 2 * completion - len(df), "seconds": gen}
    out.update({"create_s": total, "client_cpu_s": gen_cpu, "batches": len(batches)})
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------------------
# memory: 100k queued items, one fresh process per arm
# --------------------------------------------------------------------------------------------------------


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mem_worker(args: argparse.Namespace) -> None:
    import openai

    base_url = f"http://127.0.0.1:{args.port}/v1"
    n, stop, conc, words = (
        args.mem_items,
        args.mem_stop or args.mem_items,
        args.mem_concurrency,
        args.mem_words,
    )
    # warm up the imports and the SDK's lazy parts with a few requests before the baseline
    asyncio.run(bare(base_url, 8, words, 4))
    pulled = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for x in items(n, words):
            pulled += 1
            yield x

    async def run_ours() -> int:
        m = client_module()
        spec = m.EndpointSpec(base_url=base_url, model=MODEL, max_concurrency=conc, initial_concurrency=conc)
        done = 0
        async with m.EngineClient(spec, m.ClientConfig(timeout_s=120.0)) as client:
            async for r in client.run(counted()):
                done += r.ok
                if done >= stop:
                    break
        return done

    async def run_naive() -> int:
        nonlocal pulled
        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=120.0)
        requests = list(items(n, words))  # materialised up front
        pulled = len(requests)
        sem = asyncio.Semaphore(conc)
        done = 0

        async def one(item: dict[str, Any]) -> Any:
            nonlocal done
            async with sem:
                if done >= stop:
                    return None
                c = await client.chat.completions.create(
                    model=MODEL, messages=item["messages"], **item["params"]
                )
                done += 1
                return c.usage.completion_tokens

        await asyncio.gather(*(one(x) for x in requests))  # one Task per item, all created at once
        await client.close()
        return done

    before = rss_kib()
    t0 = time.perf_counter()
    done = asyncio.run(run_ours() if args.mem_worker == "ours" else run_naive())
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"arm": args.mem_worker, "queued": n, "completed": done, "pulled": pulled, "seconds": seconds}
    out.update(
        {"rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024, "growth_mib": (peak - before) / 1024}
    )
    print(json.dumps(out), flush=True)


def memory(args: argparse.Namespace, server: Server, arm: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--mem-worker", arm, "--port", str(server.port)]
    cmd += ["--mem-items", str(args.mem_items), "--mem-stop", str(args.mem_stop)]
    cmd += ["--mem-concurrency", str(args.mem_concurrency), "--mem-words", str(args.mem_words)]
    cmd += ["--client-file", args.client_file] if args.client_file else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])


# --------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def show(label: str, r: dict[str, Any]) -> None:
    notes = [f"{r['ok']} ok in {r['seconds']:.2f} s"]
    if r.get("client_cpu_ms_per_item") is not None:
        notes.append(f"client CPU {r['client_cpu_ms_per_item']:.2f} ms/item")
    notes.append(f"server CPU {r['server_cpu_s']:.1f} s")
    if "final_limit" in r:
        notes.append(
            f"limit {r['final_limit']} (max {r['max_limit_seen']}), {r['mean_inflight']:.0f} in flight"
        )
    if "create_s" in r:
        notes.append(f"create() {r['create_s']:.1f} s")
    print(
        f"  {label:<24}{r['items_per_s']:7.1f} items/s {r['tokens_per_s']:8.0f} tokens/s ({'; '.join(notes)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--items", type=int, default=2000, help="requests per throughput run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of every arm")
    ap.add_argument("--latency", type=float, default=0.05, help="server seconds per request")
    ap.add_argument("--words", type=int, default=120, help="prompt words (the completion echoes them)")
    ap.add_argument("--sweep", default="8,16,32,64,128", help="bare-loop concurrencies to try")
    ap.add_argument("--dd-python", default=DD_DEFAULT if Path(DD_DEFAULT).exists() else "")
    ap.add_argument("--mem-items", type=int, default=100_000, help="items queued in the memory part")
    ap.add_argument(
        "--mem-stop", type=int, default=10_000, help="stop each memory arm after N replies (0: all)"
    )
    ap.add_argument("--mem-concurrency", type=int, default=64)
    ap.add_argument("--mem-words", type=int, default=8, help="prompt words in the memory part")
    ap.add_argument("--mem-latency", type=float, default=0.0, help="server latency in the memory part")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also profile one run of each in-process arm")
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer items, rounds, 100k cut short")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--client-file", default=None, help="benchmark this client.py, not the installed one")
    # internal: the worker processes
    ap.add_argument("--dd-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dd-concurrency", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--mem-worker", choices=["ours", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global CLIENT_FILE
    CLIENT_FILE = args.client_file
    if args.dd_worker:
        return dd_worker(args)
    if args.mem_worker:
        return mem_worker(args)
    if args.quick:
        args.items, args.rounds, args.sweep = min(args.items, 600), 1, "16,64"
        args.mem_stop = min(args.mem_stop or 2000, 2000)

    import openai

    sweep = [int(x) for x in args.sweep.split(",")]
    client_file = client_module().__file__
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "openai": openai.__version__,
        "client_file": client_file,
        "client_sha256": hashlib.sha256(Path(client_file).read_bytes()).hexdigest()[:16],
        "load_avg_start": os.getloadavg()[0],
    }
    print(f"machine: {info['machine']}, Python {info['python']}, openai {info['openai']}")
    print(
        f"load average {info['load_avg_start']:.1f}; client: {client_file} (sha256 {info['client_sha256']})"
    )
    print(
        f"workload: {args.items} requests, {args.words}-word prompts echoed back, "
        f"server latency {args.latency * 1000:.0f} ms, server in its own process"
    )
    figures: dict[str, Any] = {"info": info, "args": {k: str(v) for k, v in vars(args).items()}}

    server = Server(args.latency)
    try:
        timed(server, bare, 50, args.words, 8)  # warm-up: imports, lazy parts of the SDK
        timed(server, ours, 50, args.words, 8, 8)
        print("\n[1] bare AsyncOpenAI worker pool, concurrency sweep")
        sweep_runs = {}
        for c in sweep:
            show(f"C={c}", sweep_runs.setdefault(c, timed(server, bare, args.items, args.words, c)))
        best = max(sweep, key=lambda c: sweep_runs[c]["tokens_per_s"])
        print(f"  best: C={best}")
        figures["sweep"] = {str(c): r for c, r in sweep_runs.items()}
        figures["best_concurrency"] = best

        arms: dict[str, Any] = {
            "bare": lambda: timed(server, bare, args.items, args.words, best),
            "bare_tasks": lambda: timed(server, bare_tasks, args.items, args.words, best),
            "ours_fixed": lambda: timed(server, ours, args.items, args.words, best, best),
            "ours_adaptive": lambda: timed(server, ours, args.items, args.words, max(sweep), 4),
        }
        if args.dd_python and Path(args.dd_python).exists():
            arms["data_designer"] = lambda: data_designer(args, server, best)
        else:
            print("data-designer: not installed (skip)")
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
        print(f"\n[2] {args.rounds} alternating rounds at C={best} (adaptive: from 4 up to {max(sweep)})")
        for rnd in range(args.rounds):
            for name in list(arms) if rnd % 2 == 0 else list(arms)[::-1]:
                r = arms[name]()
                if r is not None:
                    runs[name].append(r)
                    show(f"round {rnd + 1} {name}", r)
        figures["rounds"] = runs
        summary: dict[str, Any] = {}
        for name, rs in runs.items():
            if not rs:
                continue
            summary[name] = {k: med(rs, k) for k in ("items_per_s", "tokens_per_s")}
            if rs[0].get("client_cpu_ms_per_item") is not None:
                summary[name]["client_cpu_ms_per_item"] = med(rs, "client_cpu_ms_per_item")
            if name != "bare" and len(rs) == len(runs["bare"]):
                pairs = list(zip(rs, runs["bare"], strict=True))
                per_round = [o["tokens_per_s"] / b["tokens_per_s"] for o, b in pairs]
                summary[name]["ratio_tokens_vs_bare"] = statistics.median(per_round)
                summary[name]["ratio_items_vs_bare"] = statistics.median(
                    o["items_per_s"] / b["items_per_s"] for o, b in pairs
                )
                summary[name]["ratio_rounds"] = per_round
        figures["summary"] = summary

        if args.profile:
            print(f"\n[2b] one profiled run of each in-process arm ({args.items} items, cProfile on)")
            figures["profile"] = {}
            for name, fn, extra in (
                ("bare", bare, ()),
                ("bare_tasks", bare_tasks, ()),
                ("ours_fixed", ours, (best,)),
            ):
                p = figures["profile"][name] = profile(server, fn, args.items, args.words, best, *extra)
                print(
                    f"  {name:<12} {p['calls_per_item']:7.0f} Python calls/item, "
                    f"{p['readable_checks_per_item']:5.1f} idle-connection checks/item"
                )

        if not args.no_memory:
            mem_server = Server(args.mem_latency) if args.mem_latency != args.latency else server
            try:
                stop = f", each stopped after {args.mem_stop} replies" if args.mem_stop else ""
                print(
                    f"\n[3] memory: {args.mem_items} items queued{stop}, C={args.mem_concurrency}, "
                    f"{args.mem_words}-word prompts, server latency {args.mem_latency * 1000:.0f} ms"
                )
                figures["memory"] = {}
                for arm in ("ours", "naive"):
                    m = figures["memory"][arm] = memory(args, mem_server, arm)
                    print(
                        f"  {arm:<6} peak RSS {m['peak_rss_mib']:6.1f} MiB (before the run "
                        f"{m['rss_before_mib']:.1f}, growth {m['growth_mib']:.1f}); "
                        f"{m['completed']} replies, {m['pulled']} items read, {m['seconds']:.1f} s"
                    )
            finally:
                if mem_server is not server:
                    mem_server.close()
    finally:
        server.close()

    info["load_avg_end"] = os.getloadavg()[0]
    print(
        f"\nsummary: medians of {args.rounds} rounds at C={best}; ratio = median of per-round "
        f"tokens/s ratios; load {info['load_avg_start']:.1f} -> {info['load_avg_end']:.1f}"
    )
    print(f"  {'arm':<16}{'items/s':>10}{'tokens/s':>12}{'CPU ms/item':>13}{'vs bare':>9}")
    for name, s in summary.items():
        cpu = f"{s['client_cpu_ms_per_item']:.2f}" if "client_cpu_ms_per_item" in s else "-"
        ratio = f"{s['ratio_tokens_vs_bare']:.2f}x" if "ratio_tokens_vs_bare" in s else "1.00x"
        print(f"  {name:<16}{s['items_per_s']:>10.1f}{s['tokens_per_s']:>12.0f}{cpu:>13}{ratio:>9}")
    if "memory" in figures:
        mo, mn = figures["memory"]["ours"], figures["memory"]["naive"]
        print(
            f"  memory, {args.mem_items} queued: ours peak {mo['peak_rss_mib']:.0f} MiB "
            f"(+{mo['growth_mib']:.0f}), naive peak {mn['peak_rss_mib']:.0f} MiB (+{mn['growth_mib']:.0f}); "
            f"peak ratio naive/ours {mn['peak_rss_mib'] / mo['peak_rss_mib']:.1f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
