"""Start a local OpenAI-compatible engine for a model directory (the ``serve: PATH`` endpoint form).

``LocalServer(path).start()`` launches ``vllm serve PATH`` or ``transformers serve PATH`` on a loopback port,
waits until it answers ``GET /health`` (or ``GET /v1/models`` where there is no ``/health``), and exposes
``base_url`` and ``model`` for :class:`pretrainlab.engines.EndpointSpec`. Use it as a context manager::

    with LocalServer("runs/x/export") as server:
        spec = EndpointSpec(base_url=server.base_url, model=server.model)

Both engines are given the model directory as their one model (transformers serve's ``FORCE_MODEL``,
vllm's positional model) and name it by that exact string: requests must send ``model`` equal to the
absolute path, with no ``@revision`` suffix (transformers serve answers 400 to anything else).

The server runs in its own process group (``start_new_session=True``), so a Ctrl-C at the terminal does not
reach it; it is stopped instead by :meth:`LocalServer.stop`, by leaving the ``with`` block (whatever the
exception, KeyboardInterrupt included), or at interpreter exit by an ``atexit`` hook covering every server
still running. Stopping sends SIGTERM to the whole group, waits up to 10 s, then SIGKILLs the group, so the
engine's own worker processes go too. Its stdout and stderr go to ``log_path`` (by default a temporary file
that is kept, for a look after the fact); a failed start raises :class:`ServeError` with the log's tail.

None of that runs when the starting process is killed (SIGKILL, the OOM killer, or a SIGTERM, whose default
action skips ``atexit``), and an engine left behind keeps holding its accelerator's memory. So every engine
is launched through a small guard (``_GUARD``) that forks a watcher, in a session of its own, and then execs
the engine in its own place (same pid, same process group). The watcher reads a pipe whose only writer is
the starting process (a child forked from it closes its copy at once, so that a worker outliving it cannot
keep the engine up): :meth:`LocalServer.stop` writes to it to stand the watcher down; when the starting
process dies, for whatever reason, the kernel closes the write end, the watcher reads EOF and stops the
engine's group as :meth:`LocalServer.stop` would (SIGTERM, the grace period, SIGKILL). A pipe rather than
the parent-death signal (``PR_SET_PDEATHSIG``): that signal follows the *thread* that forked the engine,
which may end long before the process does, and it reaches the engine alone, not its workers.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from pretrainlab.errors import ServeError

__all__ = ["ENGINES", "LocalServer", "ServeError", "resolve_engine"]

ENGINES = ("auto", "transformers", "vllm")
LOG_TAIL_LINES = 20
_TERM_GRACE_S = 10.0  # seconds between SIGTERM and SIGKILL
_POLL_INTERVAL_S = 0.25
_PROBE_TIMEOUT_S = 2.0
# readiness probes go straight to the loopback server, never through an http(s)_proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_LIVE: set[LocalServer] = set()  # started and not yet stopped; stopped at interpreter exit

# The engine's launcher: `python -I -S -c _GUARD FD GRACE_S ENGINE_ARGV...`, started as the leader of a new
# session. It forks the watcher (detached into a session of its own, through a double fork so that the engine
# never has a child it does not know of), then execs the engine. The watcher blocks on FD, the read end of
# the pipe from the starting process: a byte means "stopped, stand down"; EOF means the starting process died,
# so the engine's group gets SIGTERM, GRACE_S seconds, then SIGKILL. Polling the group once a second lets the
# watcher exit when the engine is gone on its own, before its process group id can be reused.
_GUARD = """
import os, select, signal, sys, time
fd, grace, argv = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
group = os.getpgrp()
child = os.fork()
if child:
    os.waitpid(child, 0)
    os.close(fd)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"cannot launch {argv[0]}: {e}", file=sys.stderr, flush=True)
        os._exit(127)
os.setsid()
if os.fork():
    os._exit(0)

def signal_group(sig):
    try:
        os.killpg(group, sig)
        return True
    except (ProcessLookupError, PermissionError):  # gone (and maybe its id reused already)
        return False

while not select.select([fd], [], [], 1.0)[0]:
    if not signal_group(0):
        os._exit(0)
if os.read(fd, 1) or not signal_group(signal.SIGTERM):
    os._exit(0)
print(f"pretrainlab: the process that started this engine is gone; stopping its process group {group}",
      flush=True)
deadline = time.monotonic() + grace
while time.monotonic() < deadline and signal_group(0):
    time.sleep(0.1)
signal_group(signal.SIGKILL)
"""


def _console_script(name: str) -> str | None:
    """The console script ``name`` beside this Python (its virtualenv), else on PATH, else None."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _choose_engine(engine: str) -> str:
    """The engine ``engine`` stands for: itself, or for "auto" vllm when importable and a CUDA GPU exists,
    else transformers."""
    if engine not in ENGINES:
        raise ServeError(f"unknown serving engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    if importlib.util.find_spec("vllm") is not None and _cuda_available():
        return "vllm"
    return "transformers"


def resolve_engine(engine: str) -> list[str]:
    """The argv prefix that serves a model with ``engine`` ("auto", "transformers" or "vllm"): the engine's
    console script and its ``serve`` subcommand, to be followed by the model path and options.

    Raises ServeError for an unknown engine or one whose console script is not installed.
    """
    chosen = _choose_engine(engine)
    script = _console_script(chosen)
    if script is None:
        extra = "pip install vllm" if chosen == "vllm" else "pip install 'transformers[serving]'"
        raise ServeError(
            f"cannot serve with {chosen}: its console script {chosen!r} is neither beside {sys.executable} "
            f"nor on PATH ({extra})"
        )
    return [script, "serve"]


def _check_model_dir(path: Path) -> None:
    """Raise ServeError unless ``path`` is a folder with a config.json (a transformers model folder)."""
    if not path.exists():
        raise ServeError(f"cannot serve {path}: no such directory; nothing was launched")
    if not path.is_dir():
        raise ServeError(f"cannot serve {path}: not a directory (a model folder); nothing was launched")
    if not (path / "config.json").is_file():
        raise ServeError(
            f"cannot serve {path}: no config.json in it, so it is not a transformers model folder "
            "(export one with `pretrainlab export`); nothing was launched"
        )


def _reserve_port(host: str, port: int | None) -> int:
    """``port``, checked to be free on ``host``, or a free port the OS picks when None (raises OSError)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: ignore TIME_WAIT
        s.bind(address)
        return s.getsockname()[1]


def _url_host(host: str) -> str:
    """The host to connect to for a server bound to ``host``: loopback for a wildcard, IPv6 in brackets."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _answers(url: str) -> int | None:
    """The HTTP status of ``GET url``, or None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=_PROBE_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path`` (its last 64 KiB at most)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(log unreadable: {e})"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


class LocalServer:
    """A local OpenAI-compatible engine serving the model folder ``path`` (one with a config.json).

    ``engine`` is "auto" (vllm when importable and a CUDA GPU exists, else transformers), "transformers" or
    "vllm". ``port`` None picks a free one at :meth:`start`. ``extra_args`` are appended to the engine's
    command line (e.g. ``["--dtype", "bfloat16"]``). ``base_url`` ("http://HOST:PORT/v1") and ``command``
    are set by :meth:`start`; ``model`` is the name to send in requests.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        engine: str = "auto",
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 300.0,
        log_path: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.model: str = str(self.path)
        self.engine: str = _choose_engine(engine)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.log_path = None if log_path is None else Path(log_path)
        self.extra_args = list(extra_args)
        self.base_url: str = ""
        self.command: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._watch: int | None = None  # write end of the pipe the engine's watcher reads; see _GUARD

    def __repr__(self) -> str:
        state = f"pid {self.process.pid} at {self.base_url}" if self.process else "stopped"
        return f"LocalServer({self.model!r}, engine={self.engine!r}, {state})"

    def start(self) -> LocalServer:
        """Launch the engine and wait until it is ready; returns self.

        Raises ServeError, with nothing left running, when the model folder is invalid, the engine is not
        installed, the port is taken, or the server exits or is not ready within ``startup_timeout_s``.
        """
        if self.process is not None:
            raise ServeError(f"{self!r} is already running; stop() it before starting it again")
        _check_model_dir(self.path)
        prefix = resolve_engine(self.engine)
        try:
            port = _reserve_port(self.host, self.port)
        except OSError as e:
            where = self.host if self.port is None else f"{self.host}:{self.port}"
            raise ServeError(
                f"cannot serve {self.model} on {where}: {e}; nothing was launched "
                "(pass port=None to pick a free port)"
            ) from None
        self.base_url = f"http://{_url_host(self.host)}:{port}/v1"
        self.command = [*prefix, self.model, "--host", self.host, "--port", str(port), *self.extra_args]
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="pretrainlab-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub; never hang on the network
        env.setdefault("PYTHONUNBUFFERED", "1")  # keep the log current, for its tail on failure
        read_end, self._watch = os.pipe()  # both ends close-on-exec: only the guard gets the read end
        guard = [sys.executable, "-I", "-S", "-c", _GUARD, str(read_end), f"{_TERM_GRACE_S:g}", *self.command]
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    guard,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    pass_fds=(read_end,),
                )
        except OSError as e:
            self._release_watcher()
            raise ServeError(f"cannot launch {self.command}: {e}; nothing was launched") from None
        finally:
            os.close(read_end)
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Poll until the server answers; raise ServeError if it exits first or the timeout passes."""
        assert self.process is not None
        root = self.base_url.removesuffix("/v1")
        deadline = time.monotonic() + self.startup_timeout_s
        while (code := self.process.poll()) is None:
            health = _answers(root + "/health")
            if health == 200 or (health == 404 and _answers(root + "/v1/models") == 200):
                return
            if time.monotonic() >= deadline:
                last = "no answer" if health is None else f"HTTP {health}"
                raise self._startup_error(f"was not ready in {self.startup_timeout_s:g} s (/health: {last})")
            time.sleep(_POLL_INTERVAL_S)
        raise self._startup_error(f"exited with code {code} while starting")

    def _startup_error(self, what: str) -> ServeError:
        assert self.log_path is not None
        return ServeError(
            f"{self.engine} server for {self.model} {what}.\n"
            f"command: {' '.join(self.command)}\n"
            f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}\n"
            "The server was stopped and nothing is left running; fix the cause above and start it again."
        )

    def stop(self) -> None:
        """Stop the server and its process group: SIGTERM, up to 10 s of grace, then SIGKILL for anything
        left. Idempotent; never raises (a KeyboardInterrupt while waiting still SIGKILLs the group)."""
        process, self.process = self.process, None
        _LIVE.discard(self)
        if process is None:
            return
        try:
            _signal_group(process.pid, signal.SIGTERM)
            process.wait(timeout=_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                # the group outlives its leader while any worker is left: those are killed too
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            finally:
                self._release_watcher()

    def _release_watcher(self) -> None:
        """Tell the engine's watcher that the engine was stopped here, so it exits without signalling a
        process group whose id may later be reused; a no-op when there is none or it is gone already."""
        watch, self._watch = self._watch, None
        if watch is None:
            return
        try:
            os.write(watch, b"x")
        except OSError:  # the watcher already exited: the engine's group was gone
            pass
        finally:
            os.close(watch)

    def __enter__(self) -> LocalServer:
        return self if self.process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    """Stop every server still running when the interpreter exits."""
    for server in list(_LIVE):
        server.stop()


def _forget_watchers() -> None:
    """In a child forked from this process: close its copies of the watchers' pipes, so that only this
    process's death stops the engines (a forked worker it leaves behind does not keep them up)."""
    for server in _LIVE:
        watch, server._watch = server._watch, None
        if watch is not None:
            os.close(watch)


os.register_at_fork(after_in_child=_forget_watchers)
