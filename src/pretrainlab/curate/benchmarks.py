"""Outside benchmarks as decontamination targets: read items from JSONL or Parquet files and index
them so that training text containing one is found and counted against that benchmark.

An item's text is the named fields joined by spaces (e.g. ["question", "answer"]), normalised
(lowercase, punctuation stripped) so that formatting cannot hide a leak. Items of at least `n`
words match by word n-gram (13, as in GPT-3 and lm-eval-harness); shorter ones match a whole
normalised training line. A match names the benchmark and the item (its id field, or its line
number in a JSONL file / row number in a Parquet file, both from 1).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from pretrainlab.curate.decontam import NgramIndex, normalise_text

if TYPE_CHECKING:
    from pretrainlab.config.sections import BenchmarkSpec

Hit = tuple[str, str]  # (benchmark name, item id or line number)

# A short item of one or two words ("yes", "4") equals countless innocent training lines; such
# items carry no contamination signal worth removing records for, so they are left out and counted.
MIN_SHORT_WORDS = 3


def _flatten(value: Any) -> Iterator[str]:
    """The text leaves of a field value: strings and numbers, inside lists and dicts (a list of
    choices, or {"text": [...], "label": [...]})."""
    if value is None:
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v)
    else:
        yield str(value)


def item_text(row: dict[str, Any], fields: list[str]) -> str:
    """The named fields of one item joined by spaces; a missing field counts as empty."""
    return " ".join(s for f in fields for s in _flatten(row.get(f)))


def read_items(path: str | Path, fields: list[str], id_field: str | None = None) -> Iterator[tuple[str, str]]:
    """(item id, item text) for every item of a JSON-lines file (.jsonl, .ndjson, optionally .gz) or a
    .parquet file. Without `id_field` the id is the 1-based line (JSONL) or row (Parquet) number."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        pf = pq.ParquetFile(path)
        have = set(pf.schema_arrow.names)
        columns = [c for c in dict.fromkeys([*fields, *([id_field] if id_field else [])]) if c in have]
        row_no = 0
        for batch in pf.iter_batches(columns=columns or None, batch_size=4096):
            for row in batch.to_pylist():
                row_no += 1
                yield _item_id(row, id_field, row_no, path), item_text(row, fields)
    elif name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{line_no}: not a JSON object per line ({e.msg})") from e
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
                yield _item_id(row, id_field, line_no, path), item_text(row, fields)
    else:
        raise ValueError(f"{path}: benchmark files must be .jsonl or .parquet")


def _item_id(row: dict[str, Any], id_field: str | None, number: int, path: Path) -> str:
    if id_field is None:
        return str(number)
    value = row.get(id_field)
    if value is None:
        raise ValueError(f"{path}: item {number} has no id field {id_field!r}")
    return str(value)


class BenchmarkIndex(NgramIndex[Hit]):
    """One benchmark's items; `match(text)` returns (benchmark name, item id) or None."""

    def __init__(self, name: str, n: int = 13, min_short_words: int = MIN_SHORT_WORDS):
        super().__init__(n, normalise_text)
        self.name = name
        self.min_short_words = min_short_words
        self.items = 0  # items indexed
        self.skipped = 0  # items left out: empty, or shorter than min_short_words

    def add_items(self, items: Iterable[tuple[str, str]]) -> BenchmarkIndex:
        for item_id, text in items:
            if self.add(text, (self.name, item_id), min_words=min(self.min_short_words, self.n)):
                self.items += 1
            else:
                self.skipped += 1
        return self


def load_benchmark(
    path: str | Path, name: str, fields: list[str], id_field: str | None = None, n: int = 13
) -> BenchmarkIndex:
    """Index the benchmark at `path` (JSONL or Parquet). Raises when no item has text in `fields`,
    which is a misspelt field name far more often than an empty benchmark."""
    index = BenchmarkIndex(name, n).add_items(read_items(path, fields, id_field))
    if index.items == 0:
        raise ValueError(
            f"benchmark {name!r} ({path}): no item has at least {min(MIN_SHORT_WORDS, n)} words in "
            f"fields {fields} ({index.skipped} items read)"
        )
    return index


class Benchmarks:
    """Several benchmarks, possibly with different n: a text is normalised once and checked
    against each in turn; the first hit wins."""

    def __init__(self, indexes: Iterable[BenchmarkIndex]):
        self.indexes = list(indexes)

    def __len__(self) -> int:
        return len(self.indexes)

    def match(self, text: str) -> Hit | None:
        if not self.indexes:
            return None
        prepared = self.indexes[0].prepare(text)  # every BenchmarkIndex normalises the same way
        for index in self.indexes:
            hit = index.match_prepared(prepared)
            if hit is not None:
                return hit
        return None


def load_benchmarks(specs: Iterable[BenchmarkSpec], root: Path) -> Benchmarks:
    """The design's `curate.benchmarks`, paths relative to `root` (the design file's folder)."""
    return Benchmarks(load_benchmark(root / s.path, s.name, list(s.fields), s.id, s.ngram) for s in specs)
