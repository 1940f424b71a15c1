"""The protocol every procedural world follows, and how a design names one.

A world is a small class: a pydantic `Params` model for its knobs, and two generators,
`documents()` (training text) and `probes()` (questions that measure the capability, never
training text). All randomness flows from the `seed` it is given.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

ENTRY_POINT_GROUP = "pretrainlab.worlds"


class WorldParams(BaseModel):
    """Base of every world's knobs. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


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
    """One probe. `meta["split"]` is "seen" or "heldout" where the world has such a split;
    `meta["group"]` (e.g. "k=3") breaks a capability down in reports."""

    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)
    choices: list[str] | None = None


class World(ABC):
    kind: ClassVar[str]
    version: ClassVar[int] = 1
    Params: ClassVar[type[WorldParams]]

    def __init__(self, params: WorldParams, seed: int):
        self.params = params
        self.seed = seed

    @property
    def generator(self) -> str:
        return f"world:{self.kind}@{self.version}"

    def setup(self, ctx: Any) -> None:
        """Called by the generate stage before `documents()` with its context (the design, the stage
        folder, endpoints, progress). Procedural worlds need none of it."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra counts for the stage manifest, read after `documents()` is exhausted."""
        return {}

    @abstractmethod
    def documents(self) -> Iterator[Document]: ...

    @abstractmethod
    def probes(self) -> Iterator[ProbeItem]: ...


def builtin_worlds() -> dict[str, type[World]]:
    from pretrainlab.generate.worlds.biographies import Biographies
    from pretrainlab.generate.worlds.khop import KHop
    from pretrainlab.generate.worlds.modarith import ModArith
    from pretrainlab.llm.exercise import LLMExercise

    return {w.kind: w for w in (Biographies, KHop, ModArith, LLMExercise)}


def resolve_world(kind: str) -> type[World]:
    """A built-in kind, an installed entry point, or a dotted path `package.module:Class`."""
    builtins = builtin_worlds()
    if kind in builtins:
        return builtins[kind]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return _check_world(ep.load(), kind)
    if ":" in kind or "." in kind:
        module_name, _, attr = kind.partition(":") if ":" in kind else kind.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise LookupError(f"cannot import module '{module_name}' ({e})") from e
        if not hasattr(module, attr):
            raise LookupError(f"module '{module_name}' has no attribute '{attr}'")
        return _check_world(getattr(module, attr), kind)
    known = ", ".join(sorted(builtins))
    raise LookupError(f"unknown kind '{kind}' (built-in kinds: {known}; or a dotted path module:Class)")


def _check_world(obj: Any, kind: str) -> type[World]:
    if not (isinstance(obj, type) and issubclass(obj, World)):
        raise LookupError(f"'{kind}' is not a World subclass")
    return obj
