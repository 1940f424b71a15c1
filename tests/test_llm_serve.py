"""LocalServer: a real `transformers serve` answers the openai client; no way out leaves a process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pretrainlab.engines import serve
from pretrainlab.engines.serve import LocalServer, ServeError, resolve_engine

# A stand-in engine: `python fake_engine.py MODEL --host H --port P [flags]`. It serves GET /health (or, with
# --no-health, only GET /v1/models; with --never-ready, /health says 503), never answers a POST (a request
# keeps it busy until it is stopped), writes the pids of itself and of a sleeping child it starts into --pids,
# with --exit N exits at once, and with --ignore-term survives SIGTERM.
FAKE_ENGINE = textwrap.dedent(
    """
    import argparse, http.server, signal, subprocess, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("model"); p.add_argument("--host"); p.add_argument("--port", type=int)
    p.add_argument("--pids"); p.add_argument("--no-health", action="store_true")
    p.add_argument("--never-ready", action="store_true"); p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--exit", type=int)
    a = p.parse_args()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    if a.pids:
        open(a.pids, "w").write(f"{__import__('os').getpid()} {child.pid}")
    if a.exit is not None:
        print("fake engine: cannot load", a.model, file=sys.stderr)
        sys.exit(a.exit)
    if a.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = {"/health": not (a.no_health or a.never_ready), "/v1/models": True}.get(self.path, False)
            code = 200 if ok else 503 if a.never_ready else 404
            self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(b"{}")

        def do_POST(self):
            time.sleep(3600)

    print("fake engine: serving", a.model, flush=True)
    http.server.HTTPServer((a.host, a.port), H).serve_forever()
    """
)


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return not Path("/proc").is_dir()  # no /proc to look in: os.kill said it exists


def wait_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder that passes LocalServer's check (the fake engine never reads it)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make every engine resolve to FAKE_ENGINE; returns the file its pids are written to."""
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    monkeypatch.setattr(serve, "resolve_engine", lambda engine: [sys.executable, str(script)])
    return tmp_path / "pids"


def fake_server(model_dir: Path, pids: Path, *flags: str, **kwargs: Any) -> LocalServer:
    """A LocalServer running FAKE_ENGINE (see the fake_engine fixture) with `flags`, logging beside `pids`."""
    extra_args = ["--pids", str(pids), *flags]
    return LocalServer(model_dir, log_path=pids.with_name("serve.log"), extra_args=extra_args, **kwargs)


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


def test_transformers_server_answers_the_openai_client(hf_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    openai = pytest.importorskip("openai")

    with LocalServer(hf_model, engine="transformers", log_path=tmp_path / "serve.log") as server:
        process = server.process
        assert process is not None and process.poll() is None
        assert server.model == str(hf_model.resolve())
        port = int(server.base_url.rsplit(":", 1)[1].removesuffix("/v1"))
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
        chat = client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "edge ba"}], max_tokens=4
        )
        text = client.completions.create(model=server.model, prompt="edge ba be\n? 1", max_tokens=4)
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0
    assert isinstance(text.choices[0].text, str)
    assert text.usage.prompt_tokens > 0 and text.usage.completion_tokens > 0
    assert process.poll() is not None and server.process is None
    assert port_free(port)


def test_folder_without_config_is_refused_before_launch(tmp_path: Path) -> None:
    server = LocalServer(tmp_path, engine="transformers")
    with pytest.raises(ServeError, match="config.json") as e:
        server.start()
    assert str(tmp_path.resolve()) in str(e.value)
    assert server.process is None and server.command == []
    with pytest.raises(ServeError, match="no such directory"):
        LocalServer(tmp_path / "missing", engine="transformers").start()


def test_engine_dying_at_startup_raises_with_the_log_tail(model_dir: Path, fake_engine: Path) -> None:
    server = fake_server(model_dir, fake_engine, "--exit", "3")
    with pytest.raises(ServeError) as e:
        server.start()
    message = str(e.value)
    assert "exited with code 3" in message
    assert f"fake engine: cannot load {model_dir.resolve()}" in message  # the log's tail
    assert "fake_engine.py" in message and "nothing is left running" in message
    assert server.process is None and server not in serve._LIVE
    assert wait_gone(read_pids(fake_engine))  # the sleeping child went with its process group


def test_engine_never_ready_times_out(model_dir: Path, fake_engine: Path) -> None:
    server = fake_server(model_dir, fake_engine, "--never-ready", startup_timeout_s=1.0)
    with pytest.raises(ServeError, match=r"was not ready in 1 s \(/health: HTTP 503\)"):
        server.start()
    assert wait_gone(read_pids(fake_engine))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_leaving_the_with_block_on_an_exception_stops_the_server(
    model_dir: Path, fake_engine: Path, error: type[BaseException]
) -> None:
    with pytest.raises(error):
        with fake_server(model_dir, fake_engine) as server:
            assert server.process is not None and server in serve._LIVE
            raise error("boom")
    assert server.process is None and server not in serve._LIVE
    assert wait_gone(read_pids(fake_engine))
    server.stop()  # idempotent


def test_health_falls_back_to_models(model_dir: Path, fake_engine: Path) -> None:
    with fake_server(model_dir, fake_engine, "--no-health") as server:
        assert server.process is not None and server.process.poll() is None


def test_sigterm_ignored_gets_sigkill(
    model_dir: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "_TERM_GRACE_S", 0.5)
    with fake_server(model_dir, fake_engine, "--ignore-term") as server:
        process = server.process
    assert process is not None and process.returncode == -signal.SIGKILL
    assert wait_gone(read_pids(fake_engine))


def test_a_taken_port_is_refused(model_dir: Path, fake_engine: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}"):
            fake_server(model_dir, fake_engine, port=port).start()


# the parent of a server, run as its own Python: starts one, says its pids, then waits to be interrupted.
# It restores the default SIGINT handler first: a shell without job control starts background jobs (`make
# test &`, nohup, CI runners) with SIGINT ignored, children inherit that, and the test's Ctrl-C would be lost.
PARENT = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pretrainlab.engines import serve
    serve.resolve_engine = lambda engine: [sys.executable, sys.argv[1]]
    server = serve.LocalServer(
        sys.argv[2], log_path=sys.argv[3] + ".log", extra_args=["--pids", sys.argv[3]]
    ).start()
    print("ready", flush=True)
    if sys.argv[4] == "with":
        with server:
            time.sleep(60)
    else:  # left running: the atexit hook stops it
        time.sleep(60)
    """
)


@pytest.mark.parametrize("how", ["with", "atexit"])
def test_ctrl_c_in_the_parent_leaves_no_server(
    model_dir: Path, fake_engine: Path, tmp_path: Path, how: str
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    engine = tmp_path / "fake_engine.py"
    parent = subprocess.Popen(
        [sys.executable, str(script), str(engine), str(model_dir), str(fake_engine), how],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        pids = read_pids(fake_engine)
        assert all(alive(p) for p in pids)
        parent.send_signal(signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground process group
        parent.wait(timeout=30)
    finally:
        parent.kill()
    assert wait_gone(pids)


def test_resolve_engine(monkeypatch) -> None:
    with pytest.raises(ServeError, match="unknown serving engine 'tgi'"):
        resolve_engine("tgi")
    installed = {"transformers": "/venv/bin/transformers"}
    monkeypatch.setattr(serve, "_console_script", installed.get)
    assert resolve_engine("transformers") == ["/venv/bin/transformers", "serve"]
    with pytest.raises(ServeError, match="pip install vllm"):
        resolve_engine("vllm")


@pytest.mark.parametrize(
    ("vllm_importable", "gpu", "engine"),
    [
        (False, False, "transformers"),
        (False, True, "transformers"),
        (True, False, "transformers"),
        (True, True, "vllm"),
    ],
)
def test_auto_engine_is_vllm_only_with_vllm_and_a_gpu(monkeypatch, vllm_importable, gpu, engine) -> None:
    real_find_spec = serve.importlib.util.find_spec
    monkeypatch.setattr(
        serve.importlib.util,
        "find_spec",
        lambda name, *a: (
            (object() if vllm_importable else None) if name == "vllm" else real_find_spec(name, *a)
        ),
    )
    monkeypatch.setattr(serve, "_cuda_available", lambda: gpu)
    assert LocalServer(".", engine="auto").engine == engine
