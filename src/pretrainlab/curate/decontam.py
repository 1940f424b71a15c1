"""Decontamination: find training text that contains a probe.

Long probes (at least `n` words) match by word n-gram overlap, the convention of GPT-3 and
lm-eval-harness (n=13). Short probes (a modular-arithmetic line, say) have no 13-gram, so they
match when a whole training line equals the probe text.
"""

from __future__ import annotations

from typing import Any


def _words(text: str) -> list[str]:
    return text.split()


class ProbeIndex:
    def __init__(self, probes: list[dict[str, Any]], n: int = 13):
        self.n = n
        self.grams: dict[tuple[str, ...], str] = {}
        self.lines: dict[str, str] = {}
        for p in probes:
            words = _words(p["prompt"] + p["answer"])
            if len(words) >= n:
                for i in range(len(words) - n + 1):
                    self.grams.setdefault(tuple(words[i : i + n]), p["id"])
            else:
                self.lines.setdefault(" ".join(words), p["id"])

    def match(self, text: str) -> str | None:
        """The id of a probe that `text` contains, or None."""
        if self.lines:
            for line in text.splitlines():
                hit = self.lines.get(" ".join(_words(line)))
                if hit is not None:
                    return hit
        if self.grams:
            words = _words(text)
            for i in range(len(words) - self.n + 1):
                hit = self.grams.get(tuple(words[i : i + self.n]))
                if hit is not None:
                    return hit
        return None
