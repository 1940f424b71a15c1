"""Where the data stages' independent pieces of work run: inline, on a local process pool, or on Ray.

A stage splits its work into tasks that depend on nothing but their arguments (one exercise's records,
say) and writes their results to files of their own; `Executor.map` runs a function over the tasks and
returns the results in task order. So the stage's output is the same bytes whichever executor ran it:
the executor changes how fast, never what.

- ``local``: a process pool of ``workers`` processes (default: the machine's cores), started with
  ``spawn`` so that no lock or thread of the parent is copied into a worker; one worker runs inline.
- ``ray``: each task a Ray task on the cluster at ``address``, or on a local cluster started for the
  run when none is given (and shut down after it). Ray is an optional dependency (``pip install ray``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from pretrainlab.config.sections import ExecutorSection
from pretrainlab.errors import StageError

T = TypeVar("T")


Progress = Callable[[int], None]  # called with the number of tasks done, on each completion and every second
POLL_S = 1.0


class Executor(Protocol):
    name: str
    inline: bool  # runs tasks in this process, one after the other

    def map(
        self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], progress: Progress | None = None
    ) -> list[T]:
        """`fn(*task)` for every task, results in task order."""
        ...


def _report(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)


class LocalExecutor:
    """A process pool on this machine (inline with one worker, or one task)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    @property
    def inline(self) -> bool:
        return self.workers == 1

    def map(
        self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], progress: Progress | None = None
    ) -> list[T]:
        if self.inline or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(fn(*task))
                _report(progress, len(results))
            return results
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=context) as pool:
            futures = [pool.submit(fn, *task) for task in tasks]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                _report(progress, len(futures) - len(pending))
            return [f.result() for f in futures]


class RayExecutor:
    """Tasks on a Ray cluster: the one at `address`, or a local one started for the run."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    inline = False

    def map(
        self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], progress: Progress | None = None
    ) -> list[T]:
        try:
            import ray
        except ImportError:
            raise StageError("executor.kind is ray but Ray is not installed: pip install 'ray'") from None
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # noqa: BLE001 -- any failure to reach the cluster is the user's to fix
                where = self.address or "a local cluster"
                raise StageError(f"cannot start or join Ray at {where}: {e}") from None
        try:
            remote = ray.remote(fn)
            refs = [remote.remote(*task) for task in tasks]
            pending = list(refs)
            while pending:
                _, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                _report(progress, len(refs) - len(pending))
            return ray.get(refs)
        finally:
            if started and self.address is None:
                ray.shutdown()


def executor_for(section: ExecutorSection) -> Executor:
    """The executor a design's `executor` section asks for."""
    if section.kind == "ray":
        return RayExecutor(section.address)
    return LocalExecutor(section.workers)
