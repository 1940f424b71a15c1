"""The stages of a run, in order: the one list that the pipeline runs, the ledger sums and the report shows.

A stage is its name, its code version (bump it when the same config starts giving other output), the
side of the ledger it counts on (making data, or training on it), the module that holds its code (what
its hash covers, and how it runs), whether a killed run continues (`resumable`) and whether every rank
runs it under torchrun (`distributed`). Modules are imported when a stage is hashed or run, so reading
the list (the ledger, the report, `validate`) loads no stage's dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

    from pretrainlab.config import Design


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    side: Literal["data", "training"]
    module: str  # defines `stage_config(design)` and `run_stage(design, out, inputs, console)`
    resumable: bool = False  # a killed run's output is kept and continued, not wiped
    distributed: bool = False  # every rank runs it under torchrun (else rank 0 alone)

    def config(self, design: Design) -> dict[str, Any]:
        """What the stage's hash covers, besides its version and the hash of the stage before it."""
        return importlib.import_module(self.module).stage_config(design)

    def run(self, design: Design, out: Path, inputs: dict[str, Any], console: Console) -> dict[str, Any]:
        """Run the stage into `out`; returns the fields of its manifest (`ledger` among them)."""
        return importlib.import_module(self.module).run_stage(design, out, inputs, console)


STAGES: tuple[Stage, ...] = (
    Stage("generate", 1, "data", "pretrainlab.generate.stage"),
    Stage("curate", 1, "data", "pretrainlab.curate.stage"),
    Stage("tokenize", 1, "data", "pretrainlab.tokenize.stage"),
    Stage("train", 1, "training", "pretrainlab.train.stage", resumable=True, distributed=True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    """The stage called `name`."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage named {name!r} (stages: {', '.join(STAGE_NAMES)})")
