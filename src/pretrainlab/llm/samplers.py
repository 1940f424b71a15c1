"""Drawing sampled values: the random values mixed into an LLM exercise's prompts.

The design declares samplers (`pretrainlab.config.samplers`: one variant per `kind`); here each becomes
a small object with `sample(rng)`. :func:`sample_all` draws one value per sampler, in the order given,
from a ``random.Random``. Use :func:`item_rng` for that generator so an item's values depend only on
(seed, exercise, index) -- the same in every process and on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pretrainlab.config.design import format_errors
from pretrainlab.config.samplers import (
    SAMPLER_KINDS,
    SAMPLER_VARIANTS,
    CategoricalSampler,
    ChoiceListSampler,
    FloatSampler,
    IntSampler,
    SamplerConfig,
)
from pretrainlab.exercises.vocab import derive_rng

__all__ = [
    "SAMPLER_KINDS",
    "Categorical",
    "ChoiceList",
    "FloatRange",
    "IntRange",
    "Sampler",
    "SamplerError",
    "Words",
    "build_sampler",
    "build_samplers",
    "item_rng",
    "sample_all",
]


class SamplerError(ValueError):
    """An invalid sampler spec; ``path`` is the offending field (``samplers.audience.weights``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


def item_rng(seed: int, exercise: str, index: int) -> random.Random:
    """The random stream for item ``index`` of ``exercise`` under the run ``seed``.

    String-seeded (via :func:`pretrainlab.exercises.vocab.derive_rng`), so it is the same in every
    process and Python version, and items are independent of each other and of how work is sharded.
    """
    return derive_rng(seed, "llm", exercise, int(index))


class Sampler:
    kind: str

    def sample(self, rng: random.Random) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Categorical(Sampler):
    values: tuple[Any, ...]
    weights: tuple[float, ...] | None = None
    kind = "categorical"

    def sample(self, rng: random.Random) -> Any:
        if self.weights is None:
            return self.values[rng.randrange(len(self.values))]
        return rng.choices(self.values, weights=self.weights)[0]


@dataclass(frozen=True)
class IntRange(Sampler):
    low: int
    high: int  # inclusive
    kind = "int"

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class FloatRange(Sampler):
    low: float
    high: float
    round: int | None = None  # decimals
    kind = "float"

    def sample(self, rng: random.Random) -> float:
        x = rng.uniform(self.low, self.high)
        return round(x, self.round) if self.round is not None else x


@dataclass(frozen=True)
class ChoiceList(Sampler):
    values: tuple[Any, ...]
    k: int
    kind = "choice_list"

    def sample(self, rng: random.Random) -> list[Any]:
        return rng.sample(self.values, self.k)


@dataclass(frozen=True)
class Words(Sampler):
    vocabulary: tuple[str, ...]
    k: int
    distinct: bool = False
    sep: str = " "
    kind = "words"

    def sample(self, rng: random.Random) -> str:
        if self.distinct:
            words = rng.sample(self.vocabulary, self.k)
        else:
            words = [self.vocabulary[rng.randrange(len(self.vocabulary))] for _ in range(self.k)]
        return self.sep.join(words)


_ADAPTER = TypeAdapter(dict[str, SamplerConfig])


def build_sampler(config: SamplerConfig | Sampler) -> Sampler:
    """The runtime sampler of one validated sampler config."""
    if isinstance(config, Sampler):
        return config
    if isinstance(config, CategoricalSampler):
        weights = tuple(float(w) for w in config.weights) if config.weights is not None else None
        return Categorical(tuple(config.values), weights)
    if isinstance(config, IntSampler):
        return IntRange(config.low, config.high)
    if isinstance(config, FloatSampler):
        return FloatRange(float(config.low), float(config.high), config.round)
    if isinstance(config, ChoiceListSampler):
        return ChoiceList(tuple(config.values), config.k)
    vocab = tuple(dict.fromkeys(config.vocabulary)) if config.distinct else tuple(config.vocabulary)
    return Words(vocab, config.k, config.distinct, config.sep)


def build_samplers(specs: Mapping[str, Any], path: str = "samplers") -> dict[str, Sampler]:
    """All samplers of an exercise, keyed by the variable name they fill (order kept). `specs` holds
    validated configs, or plain mappings as in a design file, validated here (:class:`SamplerError`
    names the bad field under `path`)."""
    if any(not isinstance(v, (Sampler, *SAMPLER_VARIANTS)) for v in specs.values()):
        try:
            specs = _ADAPTER.validate_python(dict(specs))
        except ValidationError as e:
            first = format_errors(e, path)[0]
            where, _, message = first.partition(": ")
            raise SamplerError(where, message) from None
    return {name: build_sampler(spec) for name, spec in specs.items()}


def sample_all(specs: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """One value per sampler, drawn in the order given. ``specs`` may be configs or built samplers.

    Deterministic given ``rng``'s state: use ``sample_all(samplers, item_rng(seed, exercise, index))``.
    Adding, removing or reordering samplers changes the values drawn after that point.
    """
    samplers = build_samplers(specs)
    return {name: s.sample(rng) for name, s in samplers.items()}
