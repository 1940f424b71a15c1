"""The record and probe schemas every generator shares, and their Parquet reader/writer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pretrainlab.runs import commit, temporary_path

RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("exercise", pa.string()),
        ("capability", pa.string()),
        ("source_id", pa.string()),
        ("source_license", pa.string()),
        ("params", pa.string()),
        ("generator", pa.string()),
        ("meta", pa.string()),
        ("text_hash", pa.string()),
    ]
)

PROBE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("capability", pa.string()),
        ("exercise", pa.string()),
        ("prompt", pa.string()),
        ("answer", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("meta", pa.string()),
    ]
)


def content_id(*parts: str) -> str:
    """A stable 128-bit id (hex) of the given strings: same content, same id, on any machine."""
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, so equal values give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_record(
    text: str,
    *,
    key: str,
    exercise: str,
    capability: str,
    params: dict[str, Any],
    generator: str,
    meta: dict[str, Any] | None = None,
    source_id: str | None = None,
    source_license: str | None = None,
) -> dict[str, Any]:
    """A record whose `id` names it (exercise and `key`, its place in the exercise's output) and whose
    `text_hash` names its text: two records with the same text share a `text_hash`, never an `id`."""
    return {
        "id": content_id(exercise, "record", key),
        "text": text,
        "exercise": exercise,
        "capability": capability,
        "source_id": source_id,
        "source_license": source_license,
        "params": dumps(params),
        "generator": generator,
        "meta": dumps(meta or {}),
        "text_hash": content_id(text),
    }


def make_probe(
    prompt: str,
    answer: str,
    *,
    exercise: str,
    capability: str,
    meta: dict[str, Any] | None = None,
    choices: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": content_id(exercise, prompt, answer),
        "capability": capability,
        "exercise": exercise,
        "prompt": prompt,
        "answer": answer,
        "choices": choices,
        "meta": dumps(meta or {}),
    }


class ParquetWriter:
    """Writes rows in row groups of `batch_rows`, zstd-compressed, to a temporary name renamed on close."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int = 8192):
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows = 0
        self._buf: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")

    def write(self, row: dict[str, Any]) -> None:
        self._buf.append(row)
        if len(self._buf) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._writer.write_table(pa.Table.from_pylist(self._buf, schema=self.schema))
            self.rows += len(self._buf)
            self._buf = []

    def close(self) -> Path:
        self._flush()
        self._writer.close()
        commit(self.tmp, self.path)
        return self.path

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self.tmp.unlink(missing_ok=True)


def read_rows(paths: Path | Iterable[Path], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield rows (dicts) from one or more Parquet files, in file order."""
    if isinstance(paths, (str, Path)):
        paths = [Path(paths)]
    for path in paths:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=columns):
            yield from batch.to_pylist()
