"""Seed corpora: the documents LLM exercises are grounded in (the design's ``corpora:`` section).

A corpus is a JSONL file, a Parquet file, or a folder of ``.txt``/``.md`` files. The design says which
fields hold the text, the id, the url and the license; every record made from a seed carries its
``source_id`` and ``source_license``. Long seeds are cut into chunks of at most ``chunk.tokens`` tokens,
at paragraph, then sentence, then token boundaries. Tokens are counted with a ``tokenizer.json`` when one
is named, else approximately (a word or a punctuation mark is one token).

How an exercise uses a corpus (:func:`seed_plan`): every chunk exactly ``repeat`` times, in corpus order,
or ``sample`` draws with replacement, uniform or weighted by a numeric field.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from pretrainlab.config.corpus import ChunkSpec, CorpusSpec, SeedUse
from pretrainlab.config.design import resolve_path
from pretrainlab.errors import CorpusError
from pretrainlab.records import content_id

FOLDER_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass(frozen=True)
class Seed:
    """One chunk of one seed document."""

    id: str  # source id; "<doc id>#<k>" for the k-th chunk of a document cut into several
    text: str
    url: str | None = None
    license: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # the document's other fields

    def context(self) -> dict[str, Any]:
        """What a prompt template sees as ``seed``."""
        return {**self.fields, "id": self.id, "text": self.text, "url": self.url, "license": self.license}


def _format(spec: CorpusSpec, p: Path) -> str:
    if spec.format != "auto":
        return spec.format
    if p.is_dir():
        return "folder"
    if p.suffix == ".parquet":
        return "parquet"
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise CorpusError(f"{p}: cannot tell the format from the name; set `format` (jsonl, parquet, folder)")


def corpus_files(spec: CorpusSpec, base_dir: Path | None) -> list[Path]:
    p = resolve_path(spec.path, base_dir)
    if not p.exists():
        raise CorpusError(f"{p}: no such file or folder")
    if _format(spec, p) == "folder":
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise CorpusError(f"{p}: no {'/'.join(FOLDER_SUFFIXES)} files in the folder")
        return files
    return [p]


def corpus_digest(spec: CorpusSpec, base_dir: Path | None) -> str:
    """A hash of the corpus's bytes (and file names): editing a seed re-runs what depends on it."""
    h = xxhash.xxh3_128()
    root = resolve_path(spec.path, base_dir)
    for f in corpus_files(spec, base_dir):
        h.update(str(f.relative_to(root) if f != root else f.name).encode() + b"\x00")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _raw_documents(spec: CorpusSpec, base_dir: Path | None) -> Iterator[dict[str, Any]]:
    root = resolve_path(spec.path, base_dir)
    files = corpus_files(spec, base_dir)
    fmt = _format(spec, root)
    if fmt == "folder":
        for f in files:
            yield {spec.text: f.read_text(encoding="utf-8"), "_file": f.relative_to(root).as_posix()}
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(files[0])
        for batch in pf.iter_batches():
            yield from batch.to_pylist()
        return
    with open(files[0], encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{files[0]}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise CorpusError(f"{files[0]}:{lineno}: expected a JSON object per line")
            yield row


def documents(spec: CorpusSpec, base_dir: Path | None = None) -> Iterator[Seed]:
    """The corpus's documents, unchunked, in file order."""
    for n, row in enumerate(_raw_documents(spec, base_dir)):
        text = row.get(spec.text)
        if not isinstance(text, str):
            raise CorpusError(f"{spec.path}: document {n} has no string field {spec.text!r}")
        if spec.id is not None:
            if row.get(spec.id) in (None, ""):
                raise CorpusError(f"{spec.path}: document {n} has no id field {spec.id!r}")
            doc_id = str(row[spec.id])
        else:
            doc_id = row.get("_file") or content_id("seed", text)[:16]
        lic = row.get(spec.license) if spec.license else None
        skip = {spec.text, spec.id, spec.url, spec.license, "_file"}
        yield Seed(
            id=doc_id,
            text=text,
            url=str(row[spec.url]) if spec.url and row.get(spec.url) else None,
            license=str(lic) if lic not in (None, "") else spec.default_license,
            fields={k: v for k, v in row.items() if k not in skip},
        )


# -------------------------------------------------------------------------------------- chunking

_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def token_counter(chunk: ChunkSpec, base_dir: Path | None = None) -> Callable[[str], int]:
    if chunk.tokenizer is None:
        return lambda s: len(_APPROX_TOKEN.findall(s))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(resolve_path(chunk.tokenizer, base_dir)))
    return lambda s: len(tok.encode(s, add_special_tokens=False).ids)


def chunk_text(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_tokens`` tokens: whole paragraphs where they fit, else
    whole sentences, else runs of words. Pieces are joined back with the separator they were cut at."""
    if count(text) <= max_tokens:
        return [text]
    out: list[str] = []

    def pack(units: list[str], sep: str, finer: Callable[[str], list[str]] | None) -> None:
        cur: list[str] = []
        for u in units:
            if count(u) > max_tokens:
                if cur:
                    out.append(sep.join(cur))
                    cur = []
                if finer is None:
                    out.append(u)  # a single word longer than the limit stays whole
                else:
                    finer(u)
                continue
            if cur and count(sep.join([*cur, u])) > max_tokens:
                out.append(sep.join(cur))
                cur = []
            cur.append(u)
        if cur:
            out.append(sep.join(cur))

    def by_words(p: str) -> list[str]:
        pack(p.split(), " ", None)
        return out

    def by_sentences(p: str) -> list[str]:
        pack(_SENTENCE_END.split(p.strip()), " ", by_words)
        return out

    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pack(paragraphs, "\n\n", by_sentences)
    return out


def seeds(spec: CorpusSpec, base_dir: Path | None = None) -> Iterator[Seed]:
    """The corpus's seeds: its documents, each cut into chunks when the spec says so."""
    count = token_counter(spec.chunk, base_dir) if spec.chunk else None
    for doc in documents(spec, base_dir):
        if count is None:
            yield doc
            continue
        pieces = chunk_text(doc.text, spec.chunk.tokens, count)  # type: ignore[union-attr]
        if len(pieces) == 1:
            yield doc
            continue
        for k, piece in enumerate(pieces):
            yield Seed(f"{doc.id}#{k}", piece, doc.url, doc.license, {**doc.fields, "chunk": k})


@dataclass(frozen=True)
class SeedItem:
    seed: Seed
    repeat: int  # 0..R-1 under `repeat`; the draw number under `sample`


def seed_plan(
    use: SeedUse, spec: CorpusSpec, base_dir: Path | None, rng: random.Random
) -> Iterator[SeedItem]:
    """The seeds an exercise uses, in item order: each chunk ``repeat`` times (streamed), or ``sample``
    draws with replacement (uniform, or weighted by the ``weight`` field)."""

    def limited() -> Iterator[Seed]:
        for n, s in enumerate(seeds(spec, base_dir)):
            if use.limit is not None and n >= use.limit:
                return
            yield s

    if use.sample is None:
        for s in limited():
            for r in range(use.repeat or 1):
                yield SeedItem(s, r)
        return
    pool = list(limited())
    if not pool:
        raise CorpusError(f"corpus {use.corpus!r} has no documents")
    weights = None
    if use.weight is not None:
        weights = []
        for s in pool:
            w = s.fields.get(use.weight)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise CorpusError(f"corpus {use.corpus!r}: seed {s.id} has weight {use.weight}={w!r}")
            weights.append(float(w))
        if not any(weights):
            raise CorpusError(f"corpus {use.corpus!r}: every weight {use.weight!r} is 0")
    for draw, s in enumerate(rng.choices(pool, weights=weights, k=use.sample)):
        yield SeedItem(s, draw)


def count_items(use: SeedUse, spec: CorpusSpec, base_dir: Path | None) -> int:
    """How many items :func:`seed_plan` yields (reads the corpus once, for progress and ETA)."""
    if use.sample is not None:
        return use.sample
    n = sum(1 for _ in seeds(spec, base_dir))
    if use.limit is not None:
        n = min(n, use.limit)
    return n * (use.repeat or 1)
