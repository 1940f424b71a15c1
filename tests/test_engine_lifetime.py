"""An engine started by pretrainlab dies with the process that started it, however that process ends.

Ctrl-C and clean exits are covered in test_llm_serve.py; these tests kill the starting process outright
(SIGTERM, whose default action skips atexit, and SIGKILL, as the OOM killer does) and check that the
engine, its worker and its watcher are all gone within a bounded wait, and that its port is free again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from pretrainlab.engines import serve
from tests.test_llm_serve import FAKE_ENGINE, alive, fake_server, port_free, read_pids, wait_gone

pytestmark = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="looks for processes in /proc")

ROOT = Path(__file__).resolve().parents[1]
GONE_WITHIN_S = 15.0  # the bound on each wait for processes to go (after a kill: up to 10 s of grace)

# The starting process, run as its own Python: `starter.py ENGINE MODEL PIDS GRACE_S [fork] [flags...]`
# starts a LocalServer on the fake engine with `flags`, with `fork` first forks a child that outlives it,
# prints "ready PORT [FORKED_PID]", then sleeps until it is killed.
STARTER = textwrap.dedent(
    """
    import os, sys, time
    from pretrainlab.engines import serve
    engine, model, pids, grace, *flags = sys.argv[1:]
    serve.resolve_engine = lambda name: [sys.executable, engine]
    serve._TERM_GRACE_S = float(grace)
    forked = "fork" in flags
    flags = [f for f in flags if f != "fork"]
    server = serve.LocalServer(model, log_path=pids + ".log", extra_args=["--pids", pids, *flags]).start()
    port = server.base_url.rsplit(":", 1)[1].removesuffix("/v1")
    child = os.fork() if forked else None
    if child == 0:  # a worker that outlives its parent, holding whatever this process had open
        time.sleep(60)
        os._exit(0)
    print("ready", port, child or "", flush=True)
    time.sleep(60)
    """
)

# `pretrainlab generate` as the console script runs it, with every engine resolved to the fake engine
# (`cli.py ENGINE PIDS generate DESIGN --runs RUNS`)
CLI = textwrap.dedent(
    """
    import sys
    from pretrainlab.engines import serve
    prefix = [sys.executable, sys.argv[1], "--pids", sys.argv[2]]
    serve.resolve_engine = lambda name: prefix
    sys.argv = ["pretrainlab", *sys.argv[3:]]
    from pretrainlab.cli import main
    main()
    """
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder that passes LocalServer's check (the fake engine never reads it)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    """The fake engine of test_llm_serve.py, as a script."""
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    return script


def holders(marker: str) -> list[int]:
    """The pids of live processes whose command line contains `marker`: the engine and its watcher, whose
    command line is the engine's guard's, when `marker` is a path given to the engine."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
        if entry.name.isdigit() and marker in cmdline and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def wait_no_holders(marker: str, timeout: float = GONE_WITHIN_S) -> list[int]:
    """Wait up to `timeout` s for no process to hold `marker`; returns those that still do."""
    deadline = time.monotonic() + timeout
    while (left := holders(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def start_starter(tmp_path: Path, engine: Path, model_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Run STARTER with `args` (grace, then fork and/or flags) until it says ready; returns it, its line."""
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    pids = tmp_path / "pids"
    cmd = [sys.executable, str(script), str(engine), str(model_dir), str(pids), *args]
    starter = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    return starter, starter.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_starter_leaves_no_engine(
    tmp_path: Path, engine: Path, model_dir: Path, sig: signal.Signals
) -> None:
    pids_file = tmp_path / "pids"
    starter, line = start_starter(tmp_path, engine, model_dir, "10")
    try:
        assert line.split()[0] == "ready", line
        port = int(line.split()[1])
        pids = read_pids(pids_file)
        assert all(alive(p) for p in pids) and not port_free(port)
        # the engine's watcher, in a session of its own, carries the engine's command line
        watchers = [p for p in holders(str(pids_file)) if p not in (*pids, starter.pid)]
        assert len(watchers) == 1 and os.getsid(watchers[0]) not in (os.getsid(0), pids[0])
        starter.send_signal(sig)
        assert starter.wait(timeout=GONE_WITHIN_S) == -sig
    finally:
        starter.kill()
    assert wait_gone(pids, timeout=GONE_WITHIN_S)
    assert wait_no_holders(str(pids_file)) == []
    assert port_free(port)
    assert "the process that started this engine is gone" in pids_file.with_suffix(".log").read_text()


def test_engine_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, engine: Path, model_dir: Path
) -> None:
    starter, line = start_starter(tmp_path, engine, model_dir, "0.5", "--ignore-term")
    try:
        assert line.split()[0] == "ready", line
        pids = read_pids(tmp_path / "pids")
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=GONE_WITHIN_S)
    finally:
        starter.kill()
    assert wait_gone(pids, timeout=GONE_WITHIN_S)
    assert wait_no_holders(str(tmp_path / "pids")) == []


def test_a_forked_child_left_behind_does_not_keep_the_engine_up(
    tmp_path: Path, engine: Path, model_dir: Path
) -> None:
    starter, line = start_starter(tmp_path, engine, model_dir, "10", "fork")
    forked = None
    try:
        assert line.split()[0] == "ready", line
        forked = int(line.split()[2])
        pids = read_pids(tmp_path / "pids")
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=GONE_WITHIN_S)
        assert wait_gone(pids, timeout=GONE_WITHIN_S)
        assert alive(forked)  # the engine went although the forked child still lives
    finally:
        starter.kill()
        if forked is not None and alive(forked):
            os.kill(forked, signal.SIGKILL)
    assert wait_no_holders(str(tmp_path / "pids")) == []


def test_a_stopped_engine_leaves_no_watcher(
    tmp_path: Path, engine: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "resolve_engine", lambda name: [sys.executable, str(engine)])
    pids_file = tmp_path / "pids"
    with fake_server(model_dir, pids_file) as server:
        assert server.process is not None
        assert len(holders(str(pids_file))) == 2  # the engine and its watcher
    assert wait_gone(read_pids(pids_file), timeout=GONE_WITHIN_S)
    assert wait_no_holders(str(pids_file)) == []
    # the watcher stood down rather than stopping the engine itself
    assert "the process that started this engine is gone" not in (tmp_path / "serve.log").read_text()


def test_an_engine_that_cannot_be_executed_fails_the_start_with_the_reason(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_executable = tmp_path / "engine"
    not_executable.write_text("#!/bin/sh\n")
    monkeypatch.setattr(serve, "resolve_engine", lambda name: [str(not_executable), "serve"])
    server = serve.LocalServer(model_dir, log_path=tmp_path / "serve.log")
    with pytest.raises(serve.ServeError, match=r"(?s)exited with code 127 .*cannot launch .*denied"):
        server.start()
    assert server.process is None and wait_no_holders(str(not_executable)) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_generate_leaves_no_engine(tmp_path: Path, engine: Path, model_dir: Path, sig: int) -> None:
    """`kill` (or `kill -9`) of `pretrainlab generate` while its `serve:` engine is busy with the stage's
    requests."""
    pytest.importorskip("openai")
    d = {
        "name": "engine-lifetime",
        "seed": 1,
        "llm": {
            "endpoints": [{"name": "local", "serve": str(model_dir), "engine": "transformers"}],
            "timeout_s": 60,  # the requests hang on the fake engine until the kill
        },
        "exercises": [
            {
                "kind": "llm",
                "name": "hello",
                "capability": "knowledge",
                "count": 4,
                "prompt": [{"role": "user", "content": "Say hello ({{ index }})."}],
            }
        ],
    }
    design = tmp_path / "design.yaml"
    design.write_text(yaml.safe_dump(d))
    script = tmp_path / "cli.py"
    script.write_text(CLI)
    pids_file = tmp_path / "pids"
    cmd = [sys.executable, str(script), str(engine), str(pids_file), "generate", str(design)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    out = tmp_path / "generate.out"
    with open(out, "w") as f:
        cli = subprocess.Popen(
            [*cmd, "--runs", str(tmp_path / "runs")], env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 60
        while not (ready := re.search(r"endpoint 'local' ready at \S+:(\d+)/v1", out.read_text())):
            assert cli.poll() is None, f"generate ended before its engine was ready:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"no engine ready in 60 s:\n{out.read_text()}"
            time.sleep(0.05)
        port = int(ready.group(1))
        pids = read_pids(pids_file)
        assert all(alive(p) for p in pids)
        cli.send_signal(sig)
        cli.wait(timeout=GONE_WITHIN_S)
    finally:
        cli.kill()
    assert wait_gone(pids, timeout=GONE_WITHIN_S)
    assert wait_no_holders(str(pids_file)) == []
    assert port_free(port)
