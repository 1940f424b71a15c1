"""Near-duplicate removal: MinHash signatures, LSH banding, verified pairs, union-find clusters.

One idea: two documents are near-duplicates when their sets of word n-grams (shingles) overlap
by at least a Jaccard `threshold`, and MinHash finds those pairs without comparing every pair.

1. Shingles. Text is lowercased, every character that is not a letter or digit becomes a space,
   and the words are split on whitespace. Numbers are kept: templated documents differ mainly
   in their numbers (two biographies born in 1931 and 1957 are different documents);
   `normalize_numbers=True` turns every digit run into "0". Shingles are word `ngram`-grams;
   a document with fewer words is one shingle; a document with no word at all is never matched.
2. Signatures. rensa's R-MinHash over 64-bit shingle hashes gives `num_perm` 32-bit minima per
   document (`rensa.RMinHash.digest_matrix_from_flat_token_hashes`). Word hashes come from
   rensa (`hash_token_sets`), n-gram hashes combine them in numpy; nothing depends on the
   process (no Python hash randomisation), the thread count or the batching, so the same inputs
   give the same output on any machine for a given rensa version (its hashes are part of the
   result; tests pin rensa 0.5.0's values).
3. Candidates. The signature is cut into `bands` bands of `rows` values, chosen by
   `choose_bands` to minimise the false-positive plus `FN_WEIGHT` times the false-negative area
   of the S-curve P(caught | J) = 1 - (1 - J^rows)^bands around the threshold. Documents whose band hashes
   agree share a bucket; every pair in a bucket of up to `_ALL_PAIRS_MAX` documents is a
   candidate, in a larger bucket each member is paired with the bucket's first and its neighbour.
4. Verification. A candidate pair's similarity is estimated from the full signatures (the
   fraction of equal values) and the pair is kept when that is at least `threshold`.
5. Clusters. Kept pairs are joined by union-find; each cluster keeps the document that comes
   first in input order, and every other member is removed, naming that representative and its
   own estimated similarity to it (which can be below the threshold when the cluster is a chain).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rensa

__all__ = [
    "NearDupResult",
    "catch_probability",
    "choose_bands",
    "describe",
    "exact_jaccard",
    "find_near_duplicates",
    "normalize",
    "shingles",
    "signatures",
]

_CHUNK = 8192  # documents normalised and hashed per batch
_ALL_PAIRS_MAX = 16  # buckets up to this size yield all their pairs
_VERIFY_CHUNK = 262_144  # candidate pairs compared per numpy batch
_SEP = "\x00"  # document separator inside a batch; never survives normalisation as a word
FN_WEIGHT = 4.0  # choose_bands: a missed pair costs this many false-positive candidates

_U64 = np.uint64
_MUL = _U64(0x9E3779B97F4A7C15)  # golden-ratio multiplier for combining hashes
_M1, _M2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)  # splitmix64 finaliser

# ASCII fast path: one bytes.translate lowercases and blanks every non-alphanumeric byte.
_ASCII_TABLE = bytes(
    (b + 32 if 65 <= b <= 90 else b) if chr(b).isalnum() else (0 if b == 0 else 32) for b in range(256)
)
_NON_WORD = re.compile(r"(?:[^\w\x00]|_)+")
_DIGITS = re.compile(r"\d+")
_DIGITS_B = re.compile(rb"[0-9]+")


def normalize(text: str, normalize_numbers: bool = False) -> str:
    """Lowercase, every non-alphanumeric character to a space, whitespace collapsed."""
    text = _NON_WORD.sub(" ", text.replace(_SEP, " ").lower())
    if normalize_numbers:
        text = _DIGITS.sub("0", text)
    return " ".join(text.split())


def shingles(text: str, ngram: int = 5, normalize_numbers: bool = False) -> set[str]:
    """The set of word n-grams (joined by spaces) that the signatures are built from."""
    words = normalize(text, normalize_numbers).split()
    if len(words) < ngram:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def exact_jaccard(a: str, b: str, *, ngram: int = 5, normalize_numbers: bool = False) -> float:
    """True shingle Jaccard of two texts (for audits and tests; O(length), no sketch)."""
    sa, sb = shingles(a, ngram, normalize_numbers), shingles(b, ngram, normalize_numbers)
    if not sa and not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


# ----------------------------------------------------------------------------- bands and rows


def catch_probability(j: float, bands: int, rows: int) -> float:
    """P(a pair of Jaccard j shares at least one band) = 1 - (1 - j^rows)^bands."""
    return 1.0 - (1.0 - j**rows) ** bands


@lru_cache(maxsize=64)
def choose_bands(threshold: float, num_perm: int = 128, fn_weight: float = FN_WEIGHT) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising the S-curve's weighted error area.

    The error is the false-positive area (integral of P(caught|J) for J in [0, threshold]) plus
    `fn_weight` times the false-negative area (integral of 1 - P(caught|J) for J in
    [threshold, 1]), each by the midpoint rule on 1,000 steps; ties go to fewer bands.
    `fn_weight=1` is the usual unweighted choice. The default weighs misses more: a false-positive
    candidate costs one signature comparison (verification drops it), a false negative is a
    duplicate left in the data; with weight 1 the curve crosses 0.5 near the threshold, so at
    threshold 0.7 only 87% of pairs at J = 0.8 would even become candidates.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be positive, got {num_perm}")
    steps = 1000
    below = (np.arange(steps) + 0.5) * (threshold / steps)
    above = threshold + (np.arange(steps) + 0.5) * ((1.0 - threshold) / steps)
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = float(np.sum(1.0 - (1.0 - below**r) ** b)) * (threshold / steps)
            fn = float(np.sum((1.0 - above**r) ** b)) * ((1.0 - threshold) / steps)
            err = fp + fn_weight * fn
            if best is None or err < best[0] - 1e-12:
                best = (err, b, r)
    assert best is not None
    return best[1], best[2]


def describe(bands: int, rows: int) -> str:
    """One line for a stage log: the banding and P(caught) at J = 0.6, 0.7, 0.8, 0.9."""
    probs = ", ".join(f"J={j}: {catch_probability(j, bands, rows):.3f}" for j in (0.6, 0.7, 0.8, 0.9))
    return f"LSH {bands} bands x {rows} rows ({bands * rows} hashes); P(caught) at {probs}"


# ----------------------------------------------------------------------------- signatures


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    x ^= x >> _U64(30)
    x *= _M1
    x ^= x >> _U64(27)
    x *= _M2
    x ^= x >> _U64(31)
    return x


def _batch_words(texts: Sequence[str], normalize_numbers: bool) -> list[bytes]:
    """All normalised words of a batch, documents separated by a b"\\x00" word."""
    texts = [t.replace(_SEP, " ") if _SEP in t else t for t in texts]
    joined = f" {_SEP} ".join(texts)
    if joined.isascii():
        raw = joined.encode("ascii").translate(_ASCII_TABLE)
        if normalize_numbers:
            raw = _DIGITS_B.sub(b"0", raw)
    else:
        text = _NON_WORD.sub(" ", joined.lower())
        if normalize_numbers:
            text = _DIGITS.sub("0", text)
        raw = text.encode("utf-8")
    return raw.split()


def _batch_shingle_hashes(texts: Sequence[str], ngram: int, normalize_numbers: bool):
    """(shingle hashes, per-document shingle counts) for one batch."""
    words = _batch_words(texts, normalize_numbers)
    sep = b"\x00"
    h = np.array(rensa.RMinHash.hash_token_sets([words])[0], dtype=_U64)
    ends = np.flatnonzero(h == np.array(rensa.RMinHash.hash_token_sets([[sep]])[0], dtype=_U64))
    if len(ends) != len(texts) - 1:  # a word hashed like the separator: find separators by value
        ends = np.array([i for i, w in enumerate(words) if w == sep], dtype=np.int64)
    starts = np.concatenate(([0], ends + 1))
    ends = np.concatenate((ends, [len(h)]))
    nwords = ends - starts
    counts = np.where(nwords >= ngram, nwords - ngram + 1, np.minimum(nwords, 1))
    # rolling n-gram hash at every position (windows crossing a separator are dropped below)
    span = max(len(h) - ngram + 1, 0)
    acc = np.zeros(span, dtype=_U64)
    with np.errstate(over="ignore"):
        for k in range(ngram):
            acc = acc * _MUL + h[k : k + span]
        acc = _mix(acc)
    total = int(counts.sum())
    doc_off = np.cumsum(counts) - counts  # each document's first shingle in the output
    pos = np.repeat(starts, counts) + (np.arange(total) - np.repeat(doc_off, counts))
    out = acc[np.minimum(pos, span - 1)] if span else np.zeros(total, dtype=_U64)
    for d in np.flatnonzero((nwords > 0) & (nwords < ngram)):  # short documents: one shingle each
        s, n = int(starts[d]), int(nwords[d])
        v = np.array([n], dtype=_U64)
        with np.errstate(over="ignore"):
            for k in range(n):
                v = v * _MUL + h[s + k : s + k + 1]
        out[doc_off[d]] = _mix(v)[0]
    return out, counts


def signatures(
    texts: Sequence[str],
    *,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 1,
    normalize_numbers: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 signatures of shape (len(texts), num_perm), bool mask of documents with words)."""
    if ngram < 1:
        raise ValueError(f"ngram must be positive, got {ngram}")
    sigs = np.empty((len(texts), num_perm), dtype=np.uint32)
    has_words = np.zeros(len(texts), dtype=bool)
    for lo in range(0, len(texts), _CHUNK):
        batch = texts[lo : lo + _CHUNK]
        hashes, counts = _batch_shingle_hashes(batch, ngram, normalize_numbers)
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(_U64)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, num_perm, seed)
        sigs[lo : lo + len(batch)] = np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(batch), num_perm)
        has_words[lo : lo + len(batch)] = counts > 0
    return sigs, has_words


# ----------------------------------------------------------------------------- candidates, clusters


def _band_pairs(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Candidate pairs (k x 2, first < second) among documents `ids` whose band keys agree."""
    order = np.argsort(keys, kind="stable")
    k, members = keys[order], ids[order]
    new = np.flatnonzero(np.diff(k) != 0) + 1
    starts = np.concatenate(([0], new))
    sizes = np.diff(np.concatenate((starts, [len(k)])))
    out = []
    for s in np.unique(sizes[sizes > 1]):
        st = starts[sizes == s]
        if s <= _ALL_PAIRS_MAX:
            grid = members[st[:, None] + np.arange(s)]
            iu, ju = np.triu_indices(int(s), 1)
            out.append(np.stack((grid[:, iu].ravel(), grid[:, ju].ravel()), axis=1))
        else:  # star to the first member plus the chain of neighbours
            grid = members[st[:, None] + np.arange(s)]
            out.append(np.stack((np.repeat(grid[:, 0], s - 1), grid[:, 1:].ravel()), axis=1))
            out.append(np.stack((grid[:, 1:-1].ravel(), grid[:, 2:].ravel()), axis=1))
    return np.concatenate(out) if out else np.empty((0, 2), dtype=np.int64)


def _similarity(sigs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), _VERIFY_CHUNK):
        sl = slice(lo, lo + _VERIFY_CHUNK)
        out[sl] = np.count_nonzero(sigs[a[sl]] == sigs[b[sl]], axis=1) / sigs.shape[1]
    return out


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over edges (a, b): each node's root is the smallest index of its component."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        diff = ra != rb
        if not diff.any():
            return parent
        hi, lo = np.maximum(ra[diff], rb[diff]), np.minimum(ra[diff], rb[diff])
        np.minimum.at(parent, hi, lo)  # hook the larger root under the smaller
        while True:  # path compression, to the roots
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt


@dataclass(frozen=True)
class NearDupResult:
    """What `find_near_duplicates` found.

    `representative[i]` is the index document i's cluster keeps (i itself when i is kept) and
    `similarity[i]` its estimated Jaccard to it (1.0 for kept documents).
    """

    representative: np.ndarray
    similarity: np.ndarray
    bands: int
    rows: int
    threshold: float
    num_perm: int
    candidate_pairs: int
    verified_pairs: int

    @property
    def removed(self) -> dict[int, tuple[int, float]]:
        """Removed index -> (representative index, estimated similarity to it), in input order."""
        idx = np.flatnonzero(self.representative != np.arange(len(self.representative)))
        return {
            int(i): (int(r), float(s))
            for i, r, s in zip(idx, self.representative[idx], self.similarity[idx], strict=True)
        }

    @property
    def keep(self) -> np.ndarray:
        """Boolean mask of the documents to keep."""
        return self.representative == np.arange(len(self.representative))

    @property
    def cluster_sizes(self) -> dict[int, int]:
        """Representative -> cluster size, for clusters of two or more documents."""
        reps, sizes = np.unique(self.representative, return_counts=True)
        return {int(r): int(s) for r, s in zip(reps, sizes, strict=True) if s > 1}

    @property
    def n_clusters(self) -> int:
        return int(np.count_nonzero(np.bincount(self.representative) > 1)) if len(self.representative) else 0

    @property
    def n_removed(self) -> int:
        return int(np.count_nonzero(~self.keep))

    def summary(self) -> str:
        """One line for a stage log."""
        return (
            f"near-duplicates (J >= {self.threshold}): removed {self.n_removed:,} of "
            f"{len(self.representative):,} documents in {self.n_clusters:,} clusters; "
            f"{self.candidate_pairs:,} candidate pairs, {self.verified_pairs:,} verified; "
            f"{describe(self.bands, self.rows)}"
        )


def find_near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 1,
    normalize_numbers: bool = False,
    bands: int | None = None,
    rows: int | None = None,
) -> NearDupResult:
    """Cluster near-duplicate texts; each cluster keeps its first document in input order.

    `bands`/`rows` override `choose_bands(threshold, num_perm)` (both or neither).
    """
    if (bands is None) != (rows is None):
        raise ValueError("give both bands and rows, or neither")
    if bands is None or rows is None:
        bands, rows = choose_bands(threshold, num_perm)
    if bands * rows > num_perm:
        raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {num_perm}")
    sigs, has_words = signatures(
        texts, ngram=ngram, num_perm=num_perm, seed=seed, normalize_numbers=normalize_numbers
    )
    n = len(texts)
    ids = np.flatnonzero(has_words)
    pairs = []
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = sigs[ids, band * rows : (band + 1) * rows].astype(_U64)
            keys = np.full(len(ids), _U64(band), dtype=_U64)
            for c in range(rows):
                keys = keys * _MUL + block[:, c]
            pairs.append(_band_pairs(_mix(keys), ids))
    both = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    codes = np.unique(both[:, 0] * n + both[:, 1])  # each pair once, in a fixed order
    a, b = codes // max(n, 1), codes % max(n, 1)
    sim = _similarity(sigs, a, b)
    ok = sim >= threshold
    rep = _components(n, a[ok], b[ok])
    similarity = np.ones(n, dtype=np.float64)
    moved = np.flatnonzero(rep != np.arange(n))
    similarity[moved] = _similarity(sigs, moved, rep[moved])
    return NearDupResult(
        representative=rep,
        similarity=similarity,
        bands=bands,
        rows=rows,
        threshold=threshold,
        num_perm=num_perm,
        candidate_pairs=int(len(codes)),
        verified_pairs=int(ok.sum()),
    )
