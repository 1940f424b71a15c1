"""Exercises: the fields every exercise has, and the built-in procedural kinds' own parameters.

An exercise entry of a design is one variant of a union tagged by `kind` (see `config.design`): a
built-in kind's variant validates its parameters directly; any other kind (an installed entry point or
a dotted path `module:Class`) is a plugin, whose parameters its own class validates when the design is
loaded. The bounds below mirror the procedural worlds' vocabularies (a test keeps them equal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from pretrainlab.config.base import Section
from pretrainlab.config.corpus import SeedUse
from pretrainlab.config.curate import FiltersConfig

BIOGRAPHIES_MAX_PEOPLE = 160_000_000  # first x middle x last names
BIOGRAPHIES_MIN_TEMPLATES = 22  # the fewest templates any attribute has
KHOP_SYMBOLS = 1047  # symbol names


class ExerciseConfig(Section):
    """Fields every exercise has; its `kind` adds its own parameters."""

    kind: str = Field(description="What makes the data: a built-in kind or a dotted path module:Class.")
    capability: str = Field(min_length=1, description="Name of the capability this exercise teaches.")
    share: float = Field(1.0, ge=0, description="Share of the token budget (relative to the other shares).")
    name: str | None = Field(
        None, min_length=1, description="Unique exercise name; defaults to the kind. Records carry it."
    )
    filters: FiltersConfig | None = Field(
        None, description="Quality filters the curate stage applies to this exercise's records (none: off)."
    )

    @property
    def key(self) -> str:
        return self.name or self.kind

    def params(self) -> dict:
        """The kind's own parameters (every field but the common ones)."""
        common = set(ExerciseConfig.model_fields)
        return {k: v for k, v in self.model_dump(by_alias=True).items() if k not in common} | dict(
            self.model_extra or {}
        )


class BiographiesParams(Section):
    """The knobs of `kind: biographies`."""

    people: int = Field(500, ge=1, le=BIOGRAPHIES_MAX_PEOPLE, description="Number of distinct people.")
    multiplicity: int = Field(
        1,
        ge=1,
        description="Biographies per person, each with different templates (templates repeat "
        f"only when this exceeds the {BIOGRAPHIES_MIN_TEMPLATES} templates per attribute).",
    )
    permute: bool = Field(False, description="Shuffle the order of the six sentences in every biography.")
    fullname: bool = Field(
        False, description="Name the person in full in every sentence instead of using a pronoun."
    )
    qa_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Fraction of people whose QA document appears in training (the 'seen' split).",
    )
    qa: bool = Field(
        True,
        description="Emit QA documents for the seen people; when false every probe is 'heldout'.",
    )


class KHopParams(Section):
    """The knobs of `kind: khop`."""

    symbols: tuple[int, int] = Field(
        (8, 16),
        description="[lo, hi]: each document's number of symbols n is uniform in lo..hi "
        f"(2 <= lo <= hi <= {KHOP_SYMBOLS}).",
    )
    max_hops: int = Field(
        4, ge=1, description="Training queries ask for k hops, k uniform in 1..max_hops."
    )
    documents: int = Field(20000, ge=1, description="Number of training documents.")
    queries_per_doc: int = Field(4, ge=1, description="Query lines per training document.")
    pool: int | None = Field(
        None,
        ge=2,
        description="Draw symbols from the first `pool` names of the symbol list (two-letter names "
        "first); a small pool makes each symbol frequent, so BPE gives it one token. Default: all.",
    )
    probes_per_hop: int = Field(100, ge=1, description="Probes for each hop count k.")
    probe_max_hops: int | None = Field(
        None, ge=1, description="Probes cover k = 1..probe_max_hops; default max_hops."
    )

    @model_validator(mode="after")
    def _check_symbols(self) -> KHopParams:
        lo, hi = self.symbols
        if not 2 <= lo <= hi <= KHOP_SYMBOLS:
            raise ValueError(
                f"symbols must be [lo, hi] with 2 <= lo <= hi <= {KHOP_SYMBOLS}, got [{lo}, {hi}]"
            )
        if self.pool is not None and not hi <= self.pool <= KHOP_SYMBOLS:
            raise ValueError(
                f"pool must be between symbols[1]={hi} and {KHOP_SYMBOLS}, got {self.pool}"
            )
        return self

    @property
    def probe_hops(self) -> int:
        return self.max_hops if self.probe_max_hops is None else self.probe_max_hops


class ModArithParams(Section):
    """The knobs of `kind: modarith`."""

    modulus: int = Field(23, ge=2, description="Values are reduced modulo this number.")
    max_ops: int = Field(
        4, ge=1, description="Training expressions have L operations, L uniform in 1..max_ops."
    )
    documents: int = Field(20000, ge=1, description="Number of training documents.")
    lines_per_doc: int = Field(8, ge=1, description="Expressions (one per line) per training document.")
    probes_per_ops: int = Field(100, ge=1, description="Probes for each number of operations L.")
    probe_max_ops: int | None = Field(
        None, ge=1, description="Probes cover L = 1..probe_max_ops; default max_ops + 2."
    )

    @property
    def probe_ops(self) -> int:
        return self.max_ops + 2 if self.probe_max_ops is None else self.probe_max_ops


class BiographiesExercise(BiographiesParams, ExerciseConfig):
    """People with six attributes each, described in templated biographies, plus QA about them."""

    kind: Literal["biographies"]


class KHopExercise(KHopParams, ExerciseConfig):
    """Random cyclic permutations written as edges, with queries for the k-th successor of a symbol."""

    kind: Literal["khop"]


class ModArithExercise(ModArithParams, ExerciseConfig):
    """Random prefix expressions over + - * and their values modulo `modulus`."""

    kind: Literal["modarith"]


class CorpusExercise(ExerciseConfig):
    """Natural text passed through as training text: the documents of a seed corpus, each record
    carrying its source id and license."""

    kind: Literal["corpus"]
    seeds: SeedUse = Field(description="Which corpus (from `corpora`), and how its documents are used.")


class PluginExercise(ExerciseConfig):
    """A kind of the user's: an installed entry point or a dotted path `module:Class`; its own
    parameter model validates the other keys."""

    model_config = ConfigDict(extra="allow")

