"""Declarative samplers: the random values mixed into an LLM exercise's prompt.

Each sampler is a plain mapping, as it appears in a YAML design::

    samplers:
      audience: {kind: categorical, values: [child, expert], weights: [3, 1]}
      n_items:  {kind: int, low: 2, high: 5}          # inclusive
      temp:     {kind: float, low: 0.0, high: 1.0, round: 2}
      topics:   {kind: choice_list, values: [a, b, c, d], k: 2}   # k distinct values, a list
      seed_words: {kind: words, vocabulary: [...], k: 3}          # k words joined by `sep` (default " ")

:func:`build_samplers` validates them (errors name the field path, e.g.
``samplers.audience.weights: 3 weights for 2 values``); :func:`sample_all` draws one value per sampler,
in the order given, from a ``random.Random``. Use :func:`item_rng` for that generator so an item's values
depend only on (seed, exercise, index) -- the same in every process and on every machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pretrainlab.generate.worlds.vocab import derive_rng

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

    String-seeded (via :func:`pretrainlab.generate.worlds.vocab.derive_rng`), so it is the same in every
    process and Python version, and items are independent of each other and of how work is sharded.
    """
    return derive_rng(seed, "llm", exercise, int(index))


class Sampler:
    kind: str

    def sample(self, rng: random.Random) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _values(spec: Mapping[str, Any], key: str, path: str) -> list[Any]:
    if key not in spec:
        raise SamplerError(f"{path}.{key}", "missing")
    vals = spec[key]
    if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
        raise SamplerError(f"{path}.{key}", f"expected a list, got {type(vals).__name__}")
    if not vals:
        raise SamplerError(f"{path}.{key}", "must not be empty")
    return list(vals)


def _k(spec: Mapping[str, Any], path: str, default: int | None = None) -> int:
    k = spec.get("k", default)
    if k is None:
        raise SamplerError(f"{path}.k", "missing")
    if not _is_int(k) or k < 1:
        raise SamplerError(f"{path}.k", f"expected an integer >= 1, got {k!r}")
    return k


def _bounds(spec: Mapping[str, Any], path: str, check) -> tuple[Any, Any]:
    out = []
    for key in ("low", "high"):
        if key not in spec:
            raise SamplerError(f"{path}.{key}", "missing")
        if not check(spec[key]):
            raise SamplerError(f"{path}.{key}", f"expected a number, got {spec[key]!r}")
        out.append(spec[key])
    if out[0] > out[1]:
        raise SamplerError(f"{path}.low", f"low ({out[0]}) is greater than high ({out[1]})")
    return out[0], out[1]


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


_FIELDS = {
    "categorical": {"values", "weights"},
    "int": {"low", "high"},
    "float": {"low", "high", "round"},
    "choice_list": {"values", "k"},
    "words": {"vocabulary", "k", "distinct", "sep"},
}
SAMPLER_KINDS = tuple(_FIELDS)


def build_sampler(spec: Mapping[str, Any] | Sampler, path: str = "sampler") -> Sampler:
    """One sampler from its spec mapping; :class:`SamplerError` names the bad field under ``path``."""
    if isinstance(spec, Sampler):
        return spec
    if not isinstance(spec, Mapping):
        raise SamplerError(path, f"expected a mapping with a 'kind', got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in _FIELDS:
        raise SamplerError(
            f"{path}.kind", f"unknown sampler kind {kind!r} (known: {', '.join(SAMPLER_KINDS)})"
        )
    extra = set(spec) - _FIELDS[kind] - {"kind"}
    if extra:
        allowed = ", ".join(sorted(_FIELDS[kind]))
        raise SamplerError(
            f"{path}.{sorted(extra)[0]}", f"unknown field for kind {kind!r} (allowed: {allowed})"
        )

    if kind == "categorical":
        values = _values(spec, "values", path)
        weights = spec.get("weights")
        if weights is None:
            return Categorical(tuple(values))
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise SamplerError(f"{path}.weights", f"expected a list, got {type(weights).__name__}")
        if len(weights) != len(values):
            raise SamplerError(f"{path}.weights", f"{len(weights)} weights for {len(values)} values")
        for i, w in enumerate(weights):
            if not _is_num(w) or w < 0:
                raise SamplerError(f"{path}.weights[{i}]", f"expected a number >= 0, got {w!r}")
        if sum(weights) <= 0:
            raise SamplerError(f"{path}.weights", "weights sum to 0")
        return Categorical(tuple(values), tuple(float(w) for w in weights))
    if kind == "int":
        low, high = _bounds(spec, path, _is_int)
        return IntRange(low, high)
    if kind == "float":
        low, high = _bounds(spec, path, _is_num)
        rnd = spec.get("round")
        if rnd is not None and (not _is_int(rnd) or rnd < 0):
            raise SamplerError(f"{path}.round", f"expected an integer >= 0, got {rnd!r}")
        return FloatRange(float(low), float(high), rnd)
    if kind == "choice_list":
        values = _values(spec, "values", path)
        k = _k(spec, path)
        if len(set(map(repr, values))) != len(values):
            raise SamplerError(f"{path}.values", "values must be distinct")
        if k > len(values):
            raise SamplerError(f"{path}.k", f"k={k} but only {len(values)} values")
        return ChoiceList(tuple(values), k)
    # words
    vocab = _values(spec, "vocabulary", path)
    for i, w in enumerate(vocab):
        if not isinstance(w, str):
            raise SamplerError(f"{path}.vocabulary[{i}]", f"expected a string, got {w!r}")
    k = _k(spec, path)
    distinct = spec.get("distinct", False)
    if not isinstance(distinct, bool):
        raise SamplerError(f"{path}.distinct", f"expected true/false, got {distinct!r}")
    if distinct and k > len(set(vocab)):
        raise SamplerError(f"{path}.k", f"k={k} distinct words but only {len(set(vocab))} in the vocabulary")
    sep = spec.get("sep", " ")
    if not isinstance(sep, str):
        raise SamplerError(f"{path}.sep", f"expected a string, got {sep!r}")
    return Words(tuple(dict.fromkeys(vocab)) if distinct else tuple(vocab), k, distinct, sep)


def build_samplers(specs: Mapping[str, Any], path: str = "samplers") -> dict[str, Sampler]:
    """All samplers of a design, keyed by the variable name they fill (order kept)."""
    if not isinstance(specs, Mapping):
        raise SamplerError(path, f"expected a mapping of name -> sampler, got {type(specs).__name__}")
    out: dict[str, Sampler] = {}
    for name, spec in specs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SamplerError(
                f"{path}.{name}", "sampler names must be identifiers (they become template variables)"
            )
        out[name] = build_sampler(spec, f"{path}.{name}")
    return out


def sample_all(specs: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """One value per sampler, drawn in the order given. ``specs`` may be raw mappings or built samplers.

    Deterministic given ``rng``'s state: use ``sample_all(samplers, item_rng(seed, exercise, index))``.
    Adding, removing or reordering samplers changes the values drawn after that point.
    """
    samplers = build_samplers(specs) if any(not isinstance(s, Sampler) for s in specs.values()) else specs
    return {name: s.sample(rng) for name, s in samplers.items()}
