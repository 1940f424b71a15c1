"""Progress of the long stages (generate, curate, train): a live bar on a terminal, dated lines elsewhere.

A bar redraws itself in place. That is right on a terminal and useless in a log file: a batch job's log
showed nothing between a stage's start and its end, so its reader could not tell slow progress from a
hang. Where the stage's console is not interactive (a file, a pipe, a notebook, ``TERM=dumb``,
``TTY_INTERACTIVE=0``), progress goes out as plain lines instead, for example::

    2026-05-09 07:35:25 train pretrain: 120/1,200 steps · 2.1 steps/s · ETA 8m34s · loss 3.2100 · 12,345 tok/s

Each line holds the task's count (of its total, where known), its rate and ETA since the task began,
and what the stage adds (loss and tokens/s, or an LLM exercise's retries and rejections). At most one
line is printed every ``PRETRAINLAB_PROGRESS_EVERY`` seconds (default 30; 0 prints every update, ``inf``
only the line that closes each task), and one when each task (an exercise, a training run) ends.

Lines are printed when the stage reports progress (no thread of their own), so a stage stuck between
two reports prints nothing until the next one. All three stages go through :func:`stage_progress`, so
the choice between bar and lines, and the line format, live here only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task

ENV_EVERY = "PRETRAINLAB_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0


def progress_every() -> float:
    """Seconds between progress lines: ``PRETRAINLAB_PROGRESS_EVERY``, else 30.

    A value that is not a number of seconds >= 0 stops the stage at its start rather than leave a long
    job without the progress its owner asked for."""
    raw = os.environ.get(ENV_EVERY, "").strip()
    if not raw:
        return DEFAULT_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = math.nan
    if not every >= 0:  # also catches nan
        from pretrainlab.errors import StageError

        raise StageError(
            f"{ENV_EVERY}={raw!r}: expected a number of seconds >= 0 (default {DEFAULT_EVERY:g})"
        )
    return every


def stage_progress(console: Console, stage: str, *, transient: bool = False) -> BarProgress | LineProgress:
    """The progress display of `stage` on `console`: a bar where rich can redraw in place, lines elsewhere.

    `transient` bars vanish when the stage ends (lines always stay: they are the log)."""
    if console.is_interactive:
        return BarProgress(console, stage, transient=transient)
    return LineProgress(console, stage, every=progress_every())


def _duration(seconds: float) -> str:
    """12.3s, 45s, 4m05s, 2h03m: short enough for a log line, precise enough for an ETA."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(per_s: float) -> str:
    """4,394 or 2.5 or 0.0333: three figures or so, and never 0.0 for a slow but moving task."""
    if per_s >= 100:
        return f"{per_s:,.0f}"
    return f"{per_s:.1f}" if per_s >= 1 else f"{per_s:.3g}"


@dataclass
class _Task:
    what: str
    unit: str
    total: int | None
    done: int
    started: float  # clock() when the task was added
    done_at_start: int  # a resumed run's steps do not count toward its rate
    info: str = ""


class LineProgress:
    """Dated lines ``YYYY-MM-DD HH:MM:SS <stage> <what>: ...``, at most one every `every` seconds.

    `clock` (monotonic seconds) times the interval and the rates; tests pass a fake one."""

    def __init__(
        self,
        console: Console,
        stage: str,
        every: float = DEFAULT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.stage = stage
        self.every = every
        self.clock = clock
        self._tasks: list[_Task] = []
        self._last = clock()  # the first line comes one interval into the stage

    def start(self) -> None:
        """Nothing to set up: lines are printed as updates arrive."""

    def stop(self) -> None:
        """Nothing to tear down: every line is already flushed."""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add(self, what: str, total: int | None = None, done: int = 0, unit: str = "docs") -> int:
        """Start a task counting `unit`s; returns its id for `update`, `advance` and `finish`."""
        self._tasks.append(_Task(what, unit, total, done, self.clock(), done))
        return len(self._tasks) - 1

    def update(
        self, task: int, done: int, total: int | None = None, info: str | None = None, what: str | None = None
    ) -> None:
        """Set the task's count (and total, stage-specific info, name where given); print if a line is due."""
        t = self._tasks[task]
        t.done = done
        if total is not None:
            t.total = total
        if info is not None:
            t.info = info
        if what is not None:
            t.what = what
        if self.clock() - self._last >= self.every:
            self._print(t, final=False)

    def advance(self, task: int, n: int) -> None:
        """Add `n` to the task's count; print if a line is due."""
        t = self._tasks[task]
        t.done += n
        if self.clock() - self._last >= self.every:
            self._print(t, final=False)

    def finish(self, task: int) -> None:
        """Print the task's closing line, whenever the last line was."""
        self._print(self._tasks[task], final=True)

    def _print(self, t: _Task, final: bool) -> None:
        now = self._last = self.clock()
        elapsed = now - t.started
        rate = (t.done - t.done_at_start) / elapsed if elapsed > 0 else 0.0
        parts = [f"{t.done:,}/{t.total:,} {t.unit}" if t.total is not None else f"{t.done:,} {t.unit}"]
        parts.append(f"{_rate(rate)} {t.unit}/s")
        if final:
            parts.append(f"done in {_duration(elapsed)}")
        elif t.total is not None:
            parts.append(f"ETA {_duration(max(t.total - t.done, 0) / rate) if rate > 0 else '?'}")
        if t.info:
            parts.append(t.info)
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        # soft_wrap: one log line per report, never folded at the console's width; no markup or highlighting
        # (nothing is styled in a file, and info text may hold brackets). rich flushes after every print.
        self.console.print(
            f"{stamp} {self.stage} {t.what}: {' · '.join(parts)}",
            soft_wrap=True,
            markup=False,
            highlight=False,
            emoji=False,
        )


class _RateColumn(ProgressColumn):
    """Units per second, in the task's own unit (steps/s, docs/s, items/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "" if speed is None else f"{_rate(speed)} {task.fields['unit']}/s", style="progress.data.speed"
        )


class BarProgress:
    """A rich bar per task (count of total, rate, elapsed, remaining, the stage's info), redrawn in place."""

    def __init__(self, console: Console, stage: str, *, transient: bool = False) -> None:
        self._bar = Progress(
            TextColumn(f"[bold]{stage}[/bold] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            console=console,
            transient=transient,
        )

    def start(self) -> None:
        self._bar.start()

    def stop(self) -> None:
        self._bar.stop()

    def __enter__(self) -> BarProgress:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add(self, what: str, total: int | None = None, done: int = 0, unit: str = "docs") -> int:
        return self._bar.add_task(what, total=total, completed=done, info="", unit=unit)

    def update(
        self, task: int, done: int, total: int | None = None, info: str | None = None, what: str | None = None
    ) -> None:
        extra = {} if info is None else {"info": info}
        self._bar.update(TaskID(task), completed=done, total=total, description=what, **extra)

    def advance(self, task: int, n: int) -> None:
        self._bar.advance(TaskID(task), n)

    def finish(self, task: int) -> None:
        """Fill the bar of a task whose total was never known."""
        (t,) = [t for t in self._bar.tasks if t.id == task]
        if t.total is None:
            speed = t.speed
            self._bar.update(TaskID(task), total=t.completed)
            t.finished_speed = speed  # a new total restarts rich's speed samples: keep the rate shown
