"""Decontamination: find training text that contains a held-out item (a probe of the design, or an
item of an outside benchmark).

Long items (at least `n` words) match by word n-gram overlap, the convention of GPT-3 and
lm-eval-harness (n=13). Short items (a modular-arithmetic line, say) have no 13-gram, so they
match when a whole training line, or the whole training text, equals the item text.

`NgramIndex` is that matcher over any normalisation and any hit value; `ProbeIndex` keeps the
design's probes on plain whitespace words, and outside benchmarks (curate/benchmarks.py) use
`normalise_text` so that case and punctuation cannot hide a leak.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

H = TypeVar("H")

_NOT_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    """Lowercase, punctuation and underscores turned into spaces: "What's 2+2?" -> "what s 2 2".
    Replacing (not deleting) punctuation keeps "3+5=8" and "3 + 5 = 8" the same three words."""
    return _NOT_WORD.sub(" ", text.lower())


def _plain(text: str) -> str:
    return text


class Prepared:
    """A training text normalised once, for checking against several indexes."""

    __slots__ = ("words", "lines", "whole")

    def __init__(self, text: str, normalise: Callable[[str], str]):
        self.words = normalise(text).split()
        self.whole = " ".join(self.words)
        self.lines = [" ".join(normalise(line).split()) for line in text.splitlines()]


class NgramIndex(Generic[H]):
    """Items by their word n-grams (long items) or their whole text (short items), each mapped to a
    hit value that names the item. N-grams are kept as 64-bit hashes, not tuples: a benchmark of a
    million 13-grams then costs tens of MB, and a false hit needs a hash collision (~1e-7 per run)."""

    def __init__(self, n: int = 13, normalise: Callable[[str], str] = _plain):
        if n < 1:
            raise ValueError(f"n-gram length must be at least 1, got {n}")
        self.n = n
        self.normalise = normalise
        self.grams: dict[int, H] = {}
        self.lines: dict[str, H] = {}

    def __len__(self) -> int:
        return len(self.grams) + len(self.lines)

    def add(self, text: str, hit: H, min_words: int = 1) -> bool:
        """Index one item; False when it has fewer than `min_words` words and is left out. The
        first item to claim an n-gram or a line keeps it."""
        words = self.normalise(text).split()
        if len(words) < min_words:
            return False
        n = self.n
        if len(words) >= n:
            for i in range(len(words) - n + 1):
                self.grams.setdefault(hash(tuple(words[i : i + n])), hit)
        else:
            self.lines.setdefault(" ".join(words), hit)
        return True

    def prepare(self, text: str) -> Prepared:
        return Prepared(text, self.normalise)

    def match_prepared(self, p: Prepared) -> H | None:
        """Like `match`, on a text prepared with this index's normalisation."""
        if self.lines:
            for line in (*p.lines, p.whole):
                hit = self.lines.get(line)
                if hit is not None:
                    return hit
        if self.grams:
            words, n, grams = p.words, self.n, self.grams
            for i in range(len(words) - n + 1):
                hit = grams.get(hash(tuple(words[i : i + n])))
                if hit is not None:
                    return hit
        return None

    def match(self, text: str) -> H | None:
        """The hit value of an item that `text` contains, or None."""
        if not self.grams and not self.lines:
            return None
        return self.match_prepared(self.prepare(text))


class ProbeIndex(NgramIndex[str]):
    """The design's held-out probes (prompt + answer), matched on plain whitespace-split words;
    `match` returns the probe's id."""

    def __init__(self, probes: Iterable[dict[str, Any]], n: int = 13):
        super().__init__(n)
        for p in probes:
            self.add(p["prompt"] + p["answer"], p["id"])
