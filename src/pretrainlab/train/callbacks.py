"""Callbacks around the training loop: metrics, probe evaluation, checkpoints, progress.

Callbacks run in ascending `order` (stable for equal orders). The metrics logger goes first, so it
has cleaned up metrics.jsonl before anyone writes to it; the checkpointer goes last, so every row a
step writes is on disk before the checkpoint that covers that step. That ordering is what makes a
killed-and-resumed run's metrics.jsonl equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from pretrainlab.progress import BarProgress, LineProgress, stage_progress
from pretrainlab.runs import CHECKPOINTS, METRICS, write_atomic
from pretrainlab.train.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from pretrainlab.train.probes import ProbeSet
    from pretrainlab.train.trainer import Trainer


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Callback:
    """No-op hooks; subclasses override the ones they need."""

    order: int = 0

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first update of this `fit` (global_step is > 0 when resuming)."""

    def on_phase_start(self, trainer: Trainer) -> None:
        """On entering a phase, including re-entering one part-way through on resume."""

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        """After each optimizer update; `logs` holds loss, lr, grad_norm, tokens and step_s of that step."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last update."""


class MetricsLogger(Callback):
    """Appends JSON lines to `path` (default out_dir/metrics.jsonl).

    Rows: {"kind": "train", ...} every `every` steps (default config.log_every) and at the last step
    (loss is that step's; tokens_per_s, the only wall-clock field, covers the steps since the previous
    row, counting only their training time), and the rows other callbacks pass to `write`. On a fresh
    start the file is emptied; on resume, rows past the checkpoint's step are dropped, so a resumed
    run's file equals an uninterrupted run's but for tokens_per_s.
    """

    order = -100

    def __init__(self, path: Path | None = None, every: int | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.every = every
        self._every = 1
        self._tokens = 0
        self._seconds = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        if self.path is None:
            self.path = trainer.out_dir / METRICS
        self._every = self.every or trainer.config.log_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [] if trainer.resumed_step is None else self._rows_up_to(trainer.resumed_step)
        write_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def _rows_up_to(self, step: int) -> list[dict[str, Any]]:
        """Rows with step <= `step`; a line cut short by a kill is dropped."""
        if self.path is None or not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row["step"] <= step:
                rows.append(row)
        return rows

    def write(self, row: dict[str, Any]) -> None:
        """Append one row and flush it to the OS, so a killed process loses nothing it wrote."""
        if self.path is None:
            raise RuntimeError("MetricsLogger.write before on_train_start: add the logger to the callbacks")
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._tokens += logs["tokens"]
        self._seconds += logs["step_s"]
        if trainer.global_step % self._every and trainer.global_step != trainer.total_steps:
            return
        self.write(
            {
                "kind": "train",
                "step": trainer.global_step,
                "phase": trainer.phases[trainer.phase_index].name,
                "tokens": trainer.tokens_seen,
                "flops": trainer.flops_seen,
                "loss": logs["loss"],
                "lr": logs["lr"],
                "grad_norm": logs["grad_norm"],
                "tokens_per_s": self._tokens / max(self._seconds, 1e-9),
            }
        )
        self._tokens, self._seconds = 0, 0.0


class ProbeEval(Callback):
    """Scores `probe_set` before the first update of a fresh run, every `every` steps, and at the last.

    `every` defaults to config.eval_every. Rows go to `logger` (which must also be in the trainer's
    callbacks) as {"kind": "probe", "step", "tokens", "flops", **row}; wall time adds to
    trainer.timing["eval_s"].
    """

    def __init__(self, probe_set: ProbeSet, every: int | None, logger: MetricsLogger, batch_size: int = 128):
        self.probe_set = probe_set
        self.every = every
        self._every = 1
        self.logger = logger
        self.batch_size = batch_size

    def on_train_start(self, trainer: Trainer) -> None:
        self._every = self.every or trainer.config.eval_every
        if trainer.global_step == 0:
            self.evaluate(trainer)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.global_step % self._every == 0 or trainer.global_step == trainer.total_steps:
            self.evaluate(trainer)

    def evaluate(self, trainer: Trainer) -> None:
        start = time.perf_counter()
        trainer.model.eval()
        with torch.no_grad():
            rows = self.probe_set.score(
                trainer.model,
                batch_size=self.batch_size,
                device=trainer.device,
                autocast_dtype=trainer.autocast_dtype,
            )
        trainer.model.train()
        head = {
            "kind": "probe",
            "step": trainer.global_step,
            "tokens": trainer.tokens_seen,
            "flops": trainer.flops_seen,
        }
        for row in rows:
            self.logger.write({**head, **row})
        trainer.timing["eval_s"] += time.perf_counter() - start


class Checkpointer(Callback):
    """Saves trainer.state_dict() every `every` steps (default config.checkpoint_every) and at the last.

    Files are out_dir/checkpoints/step_XXXXXXX.pt, the newest `keep` kept; see `checkpoint`.
    """

    order = 100

    def __init__(self, every: int | None = None, keep: int = 2) -> None:
        self.every = every
        self._every = 1
        self.keep = keep

    def on_train_start(self, trainer: Trainer) -> None:
        self._every = self.every or trainer.config.checkpoint_every

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.global_step % self._every == 0 or trainer.global_step == trainer.total_steps:
            self.save(trainer)

    def save(self, trainer: Trainer) -> Path:
        start = time.perf_counter()
        path = save_checkpoint(trainer.state_dict(), trainer.out_dir / CHECKPOINTS, keep=self.keep)
        trainer.timing["checkpoint_s"] += time.perf_counter() - start
        return path


class ProgressBar(Callback):
    """Training progress (step of total, loss, tokens/s, ETA): a bar on a terminal, dated lines in a log
    (see `pretrainlab.progress`).

    `console` is the one the stage prints to; without one, stderr, where the pipeline prints by default.
    Tokens/s covers about the last 10 steps: one step's figure is noise in a line printed every 30 s, the
    run's mean would hide a slowdown.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self._progress: BarProgress | LineProgress | None = None
        self._task = 0
        self._tokens = self._seconds = 0.0  # sums decaying by 0.9 a step; their ratio is the recent tok/s

    def on_train_start(self, trainer: Trainer) -> None:
        self._progress = stage_progress(self.console or Console(stderr=True), "train")
        self._tokens = self._seconds = 0.0
        self._progress.start()
        self._task = self._progress.add(
            trainer.phases[trainer.phase_index].name,
            total=trainer.total_steps,
            done=trainer.global_step,
            unit="steps",
        )

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._tokens = 0.9 * self._tokens + logs["tokens"]
        self._seconds = 0.9 * self._seconds + logs["step_s"]
        if self._progress is not None:
            self._progress.update(
                self._task,
                trainer.global_step,
                info=f"loss {logs['loss']:.4f} · {self._tokens / max(self._seconds, 1e-9):,.0f} tok/s",
                what=trainer.phases[trainer.phase_index].name,
            )

    def on_train_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.finish(self._task)
            self._progress.stop()
            self._progress = None
