"""The engines of a run: `url:` endpoints as they are, `serve:` endpoints started on first use.

An :class:`EndpointPool` turns the design's ``llm.endpoints`` into :class:`EndpointSpec` objects for the
engine client. A ``serve: PATH`` endpoint is started (``transformers serve`` or ``vllm serve`` on a free
loopback port, see :mod:`pretrainlab.engines.serve`) only when an exercise first needs to send it a request,
and every started engine is stopped by :meth:`EndpointPool.close` -- which the generate stage calls
however it ends (finished, failed, or interrupted with Ctrl-C). Where the process is killed instead
(SIGTERM, SIGKILL, the OOM killer) and runs no cleanup, each engine's watcher stops it (see
:mod:`pretrainlab.engines.serve`), so no engine outlives the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pretrainlab.engines.client import ClientConfig, EndpointSpec
from pretrainlab.engines.serve import LocalServer

if TYPE_CHECKING:
    from pretrainlab.config import Design

__all__ = ["EndpointPool"]


class EndpointPool:
    def __init__(self, design: Design, log_dir: Path, announce=print) -> None:
        if design.llm is None:
            raise ValueError("the design has no `llm` section")
        self.design = design
        self.section = design.llm
        self.log_dir = Path(log_dir)
        self.announce = announce
        self.by_name = {ep.name: ep for ep in self.section.endpoints}
        self.servers: dict[str, LocalServer] = {}

    def names(self, name: str | None) -> tuple[str, ...]:
        """The endpoints a step sends to: the one it names, else all of them."""
        return (name,) if name is not None else tuple(self.by_name)  # type: ignore[return-value]

    def model(self, names: tuple[str, ...]) -> str:
        models = {self.design.endpoint_model(self.by_name[n]) for n in names}
        if len(models) != 1:
            raise ValueError(f"endpoints {', '.join(names)} serve different models: {sorted(models)}")
        return models.pop()

    def client_config(self) -> ClientConfig:
        return ClientConfig(timeout_s=self.section.timeout_s, max_attempts=self.section.max_attempts)

    def specs(self, names: tuple[str, ...]) -> list[EndpointSpec]:
        """Endpoint specs for the client, starting any `serve` engine among them that is not running."""
        out = []
        for n in names:
            ep = self.by_name[n]
            if ep.serve is not None:
                base_url = self._start(n).base_url
            else:
                base_url = ep.url
            out.append(
                EndpointSpec(
                    base_url=base_url,  # type: ignore[arg-type]
                    model=self.design.endpoint_model(ep),
                    api_key_env=ep.api_key_env,
                    name=n,
                    max_concurrency=ep.max_concurrency,
                    initial_concurrency=min(ep.initial_concurrency, ep.max_concurrency),
                )
            )
        return out

    def _start(self, name: str) -> LocalServer:
        if name not in self.servers:
            ep = self.by_name[name]
            server = LocalServer(
                self.design.resolve(ep.serve),  # type: ignore[arg-type]
                engine=ep.engine,
                startup_timeout_s=self.section.startup_timeout_s,
                log_path=self.log_dir / f"serve-{name}.log",
            )
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.announce(f"starting {server.engine} serve for endpoint '{name}' ({ep.serve})")
            server.start()
            self.servers[name] = server
            self.announce(f"endpoint '{name}' ready at {server.base_url}")
        return self.servers[name]

    def close(self) -> None:
        for name, server in self.servers.items():
            server.stop()
            self.announce(f"stopped the engine of endpoint '{name}'")
        self.servers.clear()
