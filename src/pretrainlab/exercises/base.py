"""What an exercise kind is to the generate stage: a class with a `Params` model, and two generators,
`documents()` (training text) and `probes()` (questions that measure the capability, never training
text). All randomness flows from the `seed` it is given.

A kind that needs more than procedure (an engine to talk to, a cache, its own ledger rows, a verdict on
whether its output is complete) brings it through the class methods below; the generate stage calls them
without knowing which kind it runs. Kinds are found by name in `exercises.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from pretrainlab.config.base import Section

if TYPE_CHECKING:
    from rich.console import Console

    from pretrainlab.config import Design

# The base of a plugin kind's parameters: strict, like every design section.
ExerciseParams = Section


@dataclass
class Document:
    """One training document and every value sampled to make it. Documents grounded in a seed carry the
    seed's id and license; `meta` holds what was measured making it (usage, latency, verdicts)."""

    text: str
    params: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None
    source_license: str | None = None
    meta: dict[str, Any] | None = None
    # the document's place in its exercise, for its record id; None: its position in the output
    key: str | None = None


@dataclass
class ProbeItem:
    """One probe. `meta["split"]` is "seen" or "heldout" where the exercise has such a split;
    `meta["group"]` (e.g. "k=3") breaks a capability down in reports."""

    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)
    choices: list[str] | None = None


@dataclass
class GenerateContext:
    """What the generate stage hands an exercise in `setup`: the design, the exercise's name, the stage
    folder, the kind's shared resources (from `resources`) and a progress callback
    `(done, total, info)`."""

    design: Design
    exercise: str
    out: Path
    resources: Any
    progress: Callable[[int, int | None, str], None]


class Exercise(ABC):
    """One exercise of a design, ready to make its data."""

    kind: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the same params and seed give other data
    Params: ClassVar[type[BaseModel]]
    progress_unit: ClassVar[str] = "docs"  # what the stage's progress counts for this kind
    # needs nothing of the stage (no shared resources): may run in another process or on another machine
    independent: ClassVar[bool] = True

    def __init__(self, params: Any, seed: int):
        self.params = params
        self.seed = seed

    @property
    def generator(self) -> str:
        """What made the records, as they carry it (`world:<kind>@<version>` for procedural kinds)."""
        return f"world:{self.kind}@{self.version}"

    # -- what the design is checked against, and what the stage hash covers -------------------------
    @classmethod
    def check(cls, params: Any, design: Design) -> list[str]:
        """Problems only this kind's code can find (templates, imports), as `path: message` lines
        relative to the exercise. Called when a design is loaded."""
        return []

    @classmethod
    def hash_inputs(cls, params: Any, design: Design) -> dict[str, Any]:
        """What this exercise's output depends on besides its parameters and seed (input files' bytes,
        model names): the generate stage's hash covers it."""
        return {}

    # -- the generate stage's hooks -----------------------------------------------------------------
    @classmethod
    @contextmanager
    def resources(cls, design: Design, out: Path, console: Console) -> Iterator[Any]:
        """Whatever the kind's exercises share during one generate stage (engines, caches), open for the
        stage and closed however it ends."""
        yield None

    def setup(self, ctx: GenerateContext) -> None:
        """Called before `documents()`. Procedural kinds need nothing from the stage."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra counts for the stage manifest, read after `documents()` is exhausted."""
        return {}

    def finish(self, summary: dict[str, Any], console: Console) -> None:
        """After the exercise's records are written: report, and raise `StageError` when the output is
        not fit to be marked finished."""
        return None

    @classmethod
    def ledger(cls, design: Design, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The kind's rows of the generate stage's ledger, from its exercises' summaries by name."""
        return {}

    @abstractmethod
    def documents(self) -> Iterator[Document]: ...

    @abstractmethod
    def probes(self) -> Iterator[ProbeItem]: ...
