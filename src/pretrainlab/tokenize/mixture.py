"""The mixture planner: which documents, how often, in what order, to meet token shares.

A plan is an int64 array of shape (n, 2); row `(e, d)` is document `d` of exercise `sorted(doc_lengths)[e]`,
and rows are in final corpus order. Document lengths are in tokens and include the EOS each document gets.
"""

from __future__ import annotations

import zlib

import numpy as np


def _exercise_rng(seed: int, name: str) -> np.random.Generator:
    """A stream of its own per exercise, so one exercise's choice does not move when others change."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _pick(lengths: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Document indices worth ~`target` tokens: whole shuffled passes, then a random partial pass."""
    total = int(lengths.sum())
    passes, rest = divmod(target, total)
    picks = [rng.permutation(len(lengths)) for _ in range(passes)]
    order = rng.permutation(len(lengths))
    cum = np.cumsum(lengths[order])
    k = int(np.searchsorted(cum, rest, side="right"))
    if k < len(order) and cum[k] - rest < rest - (cum[k - 1] if k else 0):
        k += 1
    picks.append(order[:k])
    return np.concatenate(picks)


def plan_mixture(
    doc_lengths: dict[str, np.ndarray],
    shares: dict[str, float],
    total_tokens: int | None,
    seed: int,
) -> np.ndarray:
    """Plan a corpus of ~`total_tokens` tokens split between exercises by `shares`, shuffled as one.

    `doc_lengths[name]` holds the token count of each document of an exercise, its EOS included
    (`len(ids) + 1` for the ids `encode_batch` returns). Exercise `name` gets
    `shares[name] / sum(shares) * total_tokens` tokens: its documents in whole passes (each reshuffled)
    plus a random partial pass, or a random subset when it has more than it needs. A share of 0, or
    no entry in `shares`, excludes the exercise. With `total_tokens=None` every document of every
    exercise is used exactly once and `shares` is ignored. All chosen documents are then shuffled
    together, so documents of one exercise (or one person) are spread over the corpus.
    """
    names = sorted(doc_lengths)
    unknown = set(shares) - set(names)
    if unknown:
        raise ValueError(f"shares for unknown exercises: {sorted(unknown)}")
    if any(s < 0 for s in shares.values()):
        raise ValueError("shares must be non-negative")
    parts = []
    if total_tokens is None:
        for e, name in enumerate(names):
            n = len(doc_lengths[name])
            parts.append(np.stack([np.full(n, e), np.arange(n)], axis=1))
    else:
        norm = sum(shares.values())
        if norm <= 0:
            raise ValueError("at least one share must be positive")
        for e, name in enumerate(names):
            share = shares.get(name, 0.0)
            if share == 0:
                continue
            lengths = np.asarray(doc_lengths[name], dtype=np.int64)
            if lengths.sum() <= 0:
                raise ValueError(f"exercise {name!r} has a positive share but no tokens")
            docs = _pick(lengths, round(share / norm * total_tokens), _exercise_rng(seed, name))
            parts.append(np.stack([np.full(len(docs), e), docs], axis=1))
    plan = np.concatenate(parts).astype(np.int64) if parts else np.empty((0, 2), dtype=np.int64)
    return plan[np.random.default_rng(seed).permutation(len(plan))]
