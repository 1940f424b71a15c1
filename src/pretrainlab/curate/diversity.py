"""Cheap diversity measures that carry most of the signal (Shaib et al. 2024, "Standardizing the
Measurement of Text Diversity": compression ratio and distinct n-grams)."""

from __future__ import annotations

import zlib


def diversity_stats(texts: list[str], sample: int = 2000) -> dict[str, float]:
    """distinct-2 (unique word bigrams / bigrams) and compression ratio (raw / zlib bytes) of the
    first `sample` texts; templated text compresses well and repeats bigrams."""
    texts = texts[:sample]
    if not texts:
        return {"distinct_2": 0.0, "compression_ratio": 0.0}
    bigrams: set[tuple[str, str]] = set()
    total = 0
    for t in texts:
        w = t.split()
        pairs = list(zip(w, w[1:], strict=False))
        bigrams.update(pairs)
        total += len(pairs)
    raw = "\n".join(texts).encode("utf-8")
    return {
        "distinct_2": round(len(bigrams) / max(total, 1), 4),
        "compression_ratio": round(len(raw) / max(len(zlib.compress(raw, 6)), 1), 3),
    }
