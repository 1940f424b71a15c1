"""Collapse watch: cheap diversity measures per exercise, and warnings when generated text is
markedly less diverse than what it should resemble.

The measures follow Shaib et al. 2024, "Standardizing the Measurement of Text Diversity" (arXiv
2403.00553), who find that a few cheap scores carry most of the signal: the compression ratio of the
concatenated texts, distinct-n (unique / total word n-grams), and self-repetition of long n-grams
across documents. A model that collapses onto a few phrasings (an LLM that rephrases every seed into
the same three sentences) compresses better, repeats n-grams and shares long n-grams between
documents; each of these moves well before a human would notice in a sample.

All scores depend on how much text is measured (distinct-n falls as text grows), so
`diversity_stats` measures an evenly spaced sample bounded in documents and words, and two sets
are compared only on stats computed with the same bounds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from itertools import chain

import numpy as np

# Polynomial n-gram hash over word hashes, wrapping at 2**64: collisions among a few million
# n-grams are ~1e-6 likely and would only nudge a statistic.
_MULT = np.uint64(0x9E3779B97F4A7C15)
DISTINCT_NS = (1, 2, 3, 4)


def _sample(texts: list[str], sample: int | None, max_words: int | None) -> tuple[list[str], list[list[str]]]:
    """Evenly spaced documents (not the first ones, which may all come from one seed or one template
    branch), thinned again evenly when they hold more than `max_words` words."""
    if sample is not None and len(texts) > sample:
        step = len(texts) / sample
        texts = [texts[int(i * step)] for i in range(sample)]
    docs = [t.split() for t in texts]
    if max_words is not None:
        total = sum(map(len, docs))
        if total > max_words:
            keep = max(1, round(len(docs) * max_words / total))
            picked = [int(i * len(docs) / keep) for i in range(keep)]
            texts, docs = [texts[i] for i in picked], [docs[i] for i in picked]
    return texts, docs


def _ngram_keys(
    docs: list[list[str]], ns: tuple[int, ...], doc_n: int
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """For each n in `ns`: 64-bit hashes of every word n-gram that lies inside one document; and, for
    n = `doc_n`, which document each of those n-grams comes from (for self-repetition)."""
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    flat = list(chain.from_iterable(docs))
    words = np.fromiter(map(hash, flat), dtype=np.int64, count=len(flat)).view(np.uint64)
    ends = np.cumsum(lengths)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    out: dict[int, np.ndarray] = {}
    keys = words.copy()
    doc_ids = np.empty(0, dtype=np.int64)
    for n in range(1, max(*ns, doc_n) + 1):
        if n > 1:  # extend every (n-1)-gram starting at i by the word at i + n - 1
            keys = keys[:-1] * _MULT + words[n - 1 :]
        starts = np.arange(len(keys), dtype=np.int64)
        inside = starts + n <= ends[doc_of[: len(keys)]]
        if n in ns:
            out[n] = keys[inside]
        if n == doc_n:
            doc_ids = doc_of[: len(keys)][inside]
    return out, doc_ids


def distinct_n(keys: np.ndarray) -> float:
    """Unique / total n-grams; 0 when there are none. Counted on a sorted copy: numpy's hash-based
    `np.unique` is several times slower on millions of 64-bit keys."""
    if not keys.size:
        return 0.0
    s = np.sort(keys)
    return float((1 + np.count_nonzero(s[1:] != s[:-1])) / s.size)


def self_repetition(keys: np.ndarray, doc_ids: np.ndarray, n_docs: int) -> float:
    """Share of `n_docs` documents that share at least one n-gram (given as `keys` with the document
    each comes from) with some other document; repeats inside one document do not count.

    Shaib et al.'s self-repetition score (after Salkar et al. 2022) averages, per document, the log of
    how often its n-grams recur elsewhere; the share of documents with any recurring long n-gram is the
    same signal bounded in [0, 1], so a threshold on it reads plainly. One sort of hashed n-grams."""
    if not keys.size or n_docs < 2:
        return 0.0
    order = np.lexsort((doc_ids, keys))
    k, d = keys[order], doc_ids[order]
    new_pair = np.ones(k.size, dtype=bool)
    new_pair[1:] = (k[1:] != k[:-1]) | (d[1:] != d[:-1])
    k, d = k[new_pair], d[new_pair]  # unique (n-gram, document) pairs, sorted by n-gram
    same_as_next = k[1:] == k[:-1]
    shared = np.zeros(k.size, dtype=bool)
    shared[1:] |= same_as_next
    shared[:-1] |= same_as_next
    flagged = np.zeros(int(d.max()) + 1, dtype=bool)
    flagged[d[shared]] = True
    return float(np.count_nonzero(flagged) / n_docs)


def diversity_stats(
    texts: list[str],
    sample: int | None = 2000,
    max_words: int | None = 100_000,
    *,
    self_repetition_n: int = 10,
    near_dup_share: float | None = None,
) -> dict[str, float]:
    """Diversity of `texts`, measured on an evenly spaced sample of at most `sample` documents and
    about `max_words` words (None: no bound), so that sets of different sizes compare like for like.

    Keys: `distinct_1` .. `distinct_4` (unique / total word n-grams inside documents),
    `compression_ratio` (raw / zlib bytes of the texts joined by newlines; templated text compresses
    well), `self_repetition` (share of documents with at least `self_repetition_n` words that share a
    `self_repetition_n`-gram with another document), `sample_docs` and `sample_words` (what was
    measured), and `near_dup_share` when the caller passes it (share of records that fell in
    near-duplicate clusters, computed where near-duplicates are found)."""
    if self_repetition_n < 1:
        raise ValueError(f"self_repetition_n must be at least 1, got {self_repetition_n}")
    texts, docs = _sample(texts, sample, max_words)
    stats: dict[str, float] = {f"distinct_{n}": 0.0 for n in DISTINCT_NS}
    stats.update(compression_ratio=0.0, self_repetition=0.0, sample_docs=len(docs), sample_words=0)
    if near_dup_share is not None:
        stats["near_dup_share"] = round(float(near_dup_share), 4)
    if not docs:
        return stats
    keys, doc_ids = _ngram_keys(docs, (*DISTINCT_NS, self_repetition_n), self_repetition_n)
    for n in DISTINCT_NS:
        stats[f"distinct_{n}"] = round(distinct_n(keys[n]), 4)
    long_enough = sum(1 for d in docs if len(d) >= self_repetition_n)
    stats["self_repetition"] = round(self_repetition(keys[self_repetition_n], doc_ids, long_enough), 4)
    raw = "\n".join(texts).encode("utf-8")
    stats["compression_ratio"] = round(len(raw) / max(len(zlib.compress(raw, 6)), 1), 3)
    stats["sample_words"] = int(keys[1].size)
    return stats


@dataclass(frozen=True)
class CollapseThresholds:
    """When an exercise counts as markedly less diverse than a reference (its seeds, or the rest of
    the corpus). Each ratio is exercise / reference on stats with the same sample bounds.

    Why these values: zlib ratios of ordinary prose sit near 2.3-3.5 whatever the topic (this repo's
    docs: 2.3-2.5 on 5-10k words), and sets that differ only in genre stay within ~1.3x of each other,
    while text recombined from a few sentences reaches 5-60; 1.5x is past ordinary variation and far
    below collapse. Distinct-2 of varied text is ~0.6-0.9 (0.84-0.89 for the docs) and halves when a
    set leans on a handful of phrasings, so 0.6x. Long
    (10-word) n-grams almost never recur between independent documents by chance, so self-repetition
    of varied text is a few percent: it warns at 2x the reference and, to keep a near-zero reference
    from making noise of small counts, only above 0.2 absolute. Near-duplicate share likewise (2x and
    0.1). Sets under `min_words` are too small to compare and are skipped."""

    compression_ratio: float = 1.5
    distinct_2: float = 0.6
    self_repetition: float = 2.0
    self_repetition_min: float = 0.2
    near_dup_share: float = 2.0
    near_dup_share_min: float = 0.1
    min_words: int = 1000


COLLAPSE_THRESHOLDS = CollapseThresholds()


def _compare(
    exercise: str, ours: dict[str, float], ref: dict[str, float], against: str, t: CollapseThresholds
) -> list[str]:
    """The warnings for one exercise against one reference."""
    if ours.get("sample_words", 0) < t.min_words or ref.get("sample_words", 0) < t.min_words:
        return []
    out: list[str] = []
    head = f"exercise {exercise!r}:"

    def both(key: str) -> tuple[float, float] | None:
        a, b = ours.get(key), ref.get(key)
        return None if a is None or b is None else (float(a), float(b))

    if (v := both("compression_ratio")) and v[0] > t.compression_ratio * v[1]:
        out.append(
            f"{head} compression ratio {v[0]:.2f} vs {v[1]:.2f} in {against} "
            f"(warns above {t.compression_ratio:g}x = {t.compression_ratio * v[1]:.2f})"
        )
    if (v := both("distinct_2")) and v[0] < t.distinct_2 * v[1]:
        out.append(
            f"{head} distinct-2 {v[0]:.3f} vs {v[1]:.3f} in {against} "
            f"(warns below {t.distinct_2:g}x = {t.distinct_2 * v[1]:.3f})"
        )
    for key, label, factor, floor in (
        ("self_repetition", "self-repetition", t.self_repetition, t.self_repetition_min),
        ("near_dup_share", "near-duplicate share", t.near_dup_share, t.near_dup_share_min),
    ):
        if (v := both(key)) and v[0] > factor * v[1] and v[0] > floor:
            out.append(
                f"{head} {label} {v[0]:.3f} vs {v[1]:.3f} in {against} "
                f"(warns above {factor:g}x = {factor * v[1]:.3f} and above {floor:g})"
            )
    a, b = int(ours["sample_words"]), int(ref["sample_words"])
    if out and max(a, b) > 2 * min(a, b):  # distinct-n falls as text grows: say when sizes differ
        out = [f"{w}; samples of {a:,} vs {b:,} words" for w in out]
    return out


def collapse_warnings(
    exercise_stats: dict[str, float],
    seed_stats: dict[str, float] | None = None,
    corpus_stats: dict[str, float] | None = None,
    thresholds: CollapseThresholds = COLLAPSE_THRESHOLDS,
    *,
    exercise: str,
) -> list[str]:
    """Warnings (one line each, naming the exercise, the metric, both values and the threshold) where
    `exercise_stats` is markedly less diverse than `seed_stats` (the seed documents an LLM exercise
    rephrases) or `corpus_stats` (the rest of the corpus: the other exercises' kept text). All are
    `diversity_stats` dicts with the same sample bounds; a metric missing on either side is skipped.

    Template exercises (arithmetic lines, say) are narrow by design and will warn against a varied
    rest of the corpus; the warning is a prompt to look, not a verdict."""
    out: list[str] = []
    if seed_stats is not None:
        out += _compare(exercise, exercise_stats, seed_stats, "its seeds", thresholds)
    if corpus_stats is not None:
        out += _compare(exercise, exercise_stats, corpus_stats, "the rest of the corpus", thresholds)
    return out
