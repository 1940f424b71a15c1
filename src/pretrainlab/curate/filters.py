"""Quality filters: the rules of a `FiltersConfig` applied to one record, giving the reason it is removed.

A reason starts with the rule's class, which the curate stage counts (``filter:length``,
``filter:repetition``, ``filter:loop``, ``filter:refusal``, ``filter:verdict``), then says why in
parentheses, so a removed record can be judged by reading its reason alone. Rules run cheapest and most
specific first (a looping text is reported as a loop, not as repetition); the first that fires wins.

Pure Python, linear in the text (about 2,500 documents of 370 words a second on one core): sets and
Counters over lines and word n-grams, one full count at the smallest n, and beyond it only the
(n+1)-grams that start where two overlapping n-grams both repeat (no other can repeat).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import compress
from typing import Any

from pretrainlab.config.curate import (
    FiltersConfig,
    LengthFilter,
    LoopFilter,
    RefusalFilter,
    RepetitionFilter,
    normalize_phrase,
)

LENGTH, REPETITION, LOOP, REFUSAL, VERDICT = (
    "filter:length",
    "filter:repetition",
    "filter:loop",
    "filter:refusal",
    "filter:verdict",
)
_BLANK_LINES = re.compile(r"\n\s*\n")
# what may precede a lead-in at the start of a text: whitespace, quotes, markdown marks
_LEADING = " \t\r\n\"'`*#>_-\u201c\u201d"


def _over(value: float, limit: float) -> str:
    """'value > limit' with enough digits that the two never print equal."""
    digits = 2
    while f"{value:.{digits}f}" == f"{limit:.{digits}f}" and digits < 8:
        digits += 1
    return f"{value:.{digits}f} > {limit:.{digits}f}"


# ------------------------------------------------------------------------------------------ length


def length_reason(text: str, words: Sequence[str], cfg: LengthFilter) -> str | None:
    """Why `text` is too short or too long, or None."""
    n, c = len(words), len(text)
    if cfg.min_words is not None and n < cfg.min_words:
        return f"{LENGTH} ({n} words < {cfg.min_words})"
    if cfg.max_words is not None and n > cfg.max_words:
        return f"{LENGTH} ({n} words > {cfg.max_words})"
    if cfg.min_chars is not None and c < cfg.min_chars:
        return f"{LENGTH} ({c} chars < {cfg.min_chars})"
    if cfg.max_chars is not None and c > cfg.max_chars:
        return f"{LENGTH} ({c} chars > {cfg.max_chars})"
    return None


# -------------------------------------------------------------------------------------- repetition


def _duplicates(units: list[str]) -> tuple[float, float]:
    """(share of units that repeat an earlier unit, share of characters in them)."""
    if len(units) < 2 or len(set(units)) == len(units):
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for u in units:
        if u in seen:
            dup += 1
            dup_chars += len(u)
        else:
            seen.add(u)
    return dup / len(units), dup_chars / sum(map(len, units))


def _ngram_shares(
    words: Sequence[str], top: Mapping[int, float], dup: Mapping[int, float]
) -> Iterator[tuple[str, float, float]]:
    """(what, share, limit) of the n-gram rules, by increasing n: for n in `top`, the characters of the
    most frequent n-gram times its count (0 unless it repeats); for n in `dup`, the characters of words
    covered by any n-gram that occurs more than once, each word once. Shares are of all words' chars.

    Only repeated n-grams matter to either rule, and every occurrence of a repeated (n+1)-gram starts
    where the n-grams at i and at i+1 both repeat; so after one full count at the smallest n, each
    larger n counts only those starts (a few percent of a document of prose), and stops at none."""
    sizes = sorted({*top, *dup})
    total = sum(map(len, words))
    if not sizes or not total:
        return
    lo = sizes[0]
    starts: list[int] = []  # where the current n-gram occurs more than once
    counts: Counter[tuple[str, ...]] = Counter()
    if len(words) >= lo:
        grams = list(zip(*(words[i:] for i in range(lo)), strict=False))
        counts = Counter(grams)
        if len(counts) < len(grams):  # in C: positions whose n-gram has a count over 1
            starts = list(compress(range(len(grams)), map((1).__lt__, map(counts.__getitem__, grams))))
    lens: list[int] | None = None
    for n in range(lo, sizes[-1] + 1):
        if n > lo:
            repeated = set(starts)
            cands = [i for i in starts if i + 1 in repeated]
            grams = [tuple(words[i : i + n]) for i in cands]
            counts = Counter(grams)
            starts = [i for i, g in zip(cands, grams, strict=True) if counts[g] > 1]
        if n in top:
            share = 0.0
            if starts:
                best = max(counts.values())
                tops = compress(counts.keys(), map(best.__eq__, counts.values()))
                share = max(sum(map(len, g)) for g in tops) * best / total
            yield f"top {n}-gram chars", share, top[n]
        if n in dup:
            share = 0.0
            if starts:
                lens = lens or list(map(len, words))
                covered = bytearray(len(words))
                run = b"\x01" * n
                for i in starts:
                    covered[i : i + n] = run
                share = sum(compress(lens, covered)) / total
            yield f"duplicated {n}-gram chars", share, dup[n]


def repetition_shares(
    text: str, words: Sequence[str], cfg: RepetitionFilter
) -> Iterator[tuple[str, float, float]]:
    """(what, share, limit) for each rule of `cfg` that is on, in the order they are checked, computed
    as they are asked for (a caller that stops at the first share over its limit does no more work)."""
    para_on = cfg.dup_para_frac is not None or cfg.dup_para_char_frac is not None
    line_on = cfg.dup_line_frac is not None or cfg.dup_line_char_frac is not None
    if "\n" in text and para_on:
        paras = [p for p in map(str.strip, _BLANK_LINES.split(text)) if p]
        frac, chars = _duplicates(paras)
        if cfg.dup_para_frac is not None:
            yield "duplicate paragraphs", frac, cfg.dup_para_frac
        if cfg.dup_para_char_frac is not None:
            yield "duplicate paragraph chars", chars, cfg.dup_para_char_frac
    if "\n" in text and line_on:
        lines = [x for x in map(str.strip, text.split("\n")) if x]
        frac, chars = _duplicates(lines)
        if cfg.dup_line_frac is not None:
            yield "duplicate lines", frac, cfg.dup_line_frac
        if cfg.dup_line_char_frac is not None:
            yield "duplicate line chars", chars, cfg.dup_line_char_frac
    yield from _ngram_shares(words, cfg.top_ngram_char_frac, cfg.dup_ngram_char_frac)


def repetition_stats(text: str, cfg: RepetitionFilter | None = None) -> dict[str, float]:
    """Every repetition share of `text` (for reports and tests), keyed by what it measures."""
    shares = repetition_shares(text, text.split(), cfg or RepetitionFilter())
    return {what: share for what, share, _ in shares}


def repetition_reason(text: str, words: Sequence[str], cfg: RepetitionFilter) -> str | None:
    """The first repetition share over its limit, or None."""
    for what, share, limit in repetition_shares(text, words, cfg):
        if share > limit:
            return f"{REPETITION} ({what} {_over(share, limit)})"
    return None


# ------------------------------------------------------------------------------------------- loops


def _quote(s: str, most: int = 40) -> str:
    return repr(s if len(s) <= most else s[:most] + "…")


def loop_reason(text: str, words: Sequence[str], cfg: LoopFilter) -> str | None:
    """Why the end of `text` is a degenerate loop, or None. Word rule: for each period n (shortest
    first), walk back from the end while each word equals the word n before it; the periodic tail then
    spans that run plus n words. Character rule: the last `tail_fraction` of the text has a period of
    at most `max_unit_chars` characters."""
    k = cfg.min_repeats
    w = len(words)
    for n in range(1, min(cfg.max_ngram, w // k) + 1):
        i = w - 1
        while i >= n and words[i] == words[i - n]:
            i -= 1
        run = w - 1 - i
        if run + n >= k * n:
            unit = " ".join(words[i + 1 - n : i + 1])
            return f"{LOOP} ({_quote(unit)} x{(run + n) // n} at the end)"
    if cfg.tail_fraction is None:
        return None
    t = text.rstrip()
    size = math.ceil(cfg.tail_fraction * len(t))
    if size < cfg.min_tail_chars:
        return None
    tail = t[len(t) - size :]
    last = t[-1]
    for p in range(1, min(cfg.max_unit_chars, size // k) + 1):
        if t[-1 - p] == last and tail[p:] == tail[:-p]:
            share = f"{cfg.tail_fraction:.0%}"
            return f"{LOOP} (last {share} repeats {_quote(t[-p:])} x{size // p})"
    return None


# ---------------------------------------------------------------------------------------- refusals


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _bounded(text: str, i: int, phrase: str) -> bool:
    """Whether `phrase`, found at `text[i:]`, stands on word boundaries where it begins or ends with a
    word character ("as an ai," is in "as an aide," only as letters, not as words)."""
    end = i + len(phrase)
    before = i == 0 or not _is_word_char(phrase[0]) or not _is_word_char(text[i - 1])
    after = end == len(text) or not _is_word_char(phrase[-1]) or not _is_word_char(text[end])
    return before and after


class RefusalMatcher:
    """The phrases of a `RefusalFilter`, matched in the text made lower case with its whitespace runs
    made single spaces: then `str.find` does the search, in C (an alternation regex with word
    boundaries costs ~300 ns a character, the whole budget of a document)."""

    def __init__(self, cfg: RefusalFilter):
        self._anywhere = sorted(set(cfg.anywhere()), key=len, reverse=True)
        self._start = sorted(set(cfg.start()), key=len, reverse=True)
        # the start rule reads only the head of the text: the longest phrase with room for spacing
        self._head = 4 * max(map(len, self._start), default=0) + 64

    def find(self, text: str) -> str | None:
        """The phrase `text` contains (anywhere) or starts with, or None."""
        if self._anywhere:
            flat = " ".join(normalize_phrase(text).split())
            for phrase in self._anywhere:
                i = flat.find(phrase)
                while i >= 0:
                    if _bounded(flat, i, phrase):
                        return phrase
                    i = flat.find(phrase, i + 1)
        if self._start:
            head = " ".join(normalize_phrase(text[: self._head]).split()).lstrip(_LEADING)
            for phrase in self._start:
                if head.startswith(phrase) and _bounded(head, 0, phrase):
                    return phrase
        return None


# ---------------------------------------------------------------------------------------- verdicts


def failed_verdicts(meta: str | Mapping[str, Any] | None) -> list[str]:
    """Names of the verdicts in a record's meta (JSON text or parsed) whose ok is false. A text with no
    literal `false` in it has none, which spares parsing the meta of almost every record."""
    if not meta:
        return []
    if isinstance(meta, str):
        if "false" not in meta:
            return []
        try:
            meta = json.loads(meta)
        except ValueError:
            return []
    verdicts = meta.get("verdicts") if isinstance(meta, Mapping) else None
    if not isinstance(verdicts, Mapping):
        return []
    return [
        str(name)
        for name, v in verdicts.items()
        if v is False or (isinstance(v, Mapping) and v.get("ok") is False)
    ]


# ------------------------------------------------------------------------------------------ filters


class Filters:
    """A `FiltersConfig` ready to apply: `check(record)` is the reason to remove it, or None to keep it."""

    def __init__(self, config: FiltersConfig):
        self.config = config
        self._refusals = RefusalMatcher(config.refusals) if config.refusals is not None else None
        self._needs_words = any(s is not None for s in (config.length, config.loops, config.repetition))

    def check(self, record: Mapping[str, Any]) -> str | None:
        """Why `record` (a dict with `text` and `meta`) is removed, or None."""
        if self.config.verdicts:
            failed = failed_verdicts(record.get("meta"))
            if failed:
                return f"{VERDICT} ({', '.join(failed)})"
        return self.check_text(record.get("text") or "")

    def check_text(self, text: str) -> str | None:
        """Why `text` is removed by the text rules (everything but verdicts), or None."""
        cfg = self.config
        words = text.split() if self._needs_words else []
        if cfg.length is not None and (reason := length_reason(text, words, cfg.length)):
            return reason
        if self._refusals is not None and (phrase := self._refusals.find(text)):
            return f"{REFUSAL} ({phrase!r})"
        if cfg.loops is not None and (reason := loop_reason(text, words, cfg.loops)):
            return reason
        if cfg.repetition is not None and (reason := repetition_reason(text, words, cfg.repetition)):
            return reason
        return None


def reason_class(reason: str) -> str:
    """The part of a reason the curate stage counts: ``filter:repetition (…)`` -> ``filter:repetition``."""
    return reason.split(" ", 1)[0]
