"""Seed corpora: formats, fields, chunking, and how exercises use seeds."""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrainlab.corpora import (
    ChunkSpec,
    CorpusError,
    CorpusSpec,
    SeedUse,
    chunk_text,
    corpus_digest,
    count_items,
    seed_plan,
    seeds,
    token_counter,
)

ROWS = [
    {"doc": "a", "body": "Alpha text.", "src": "https://x.org/a", "lic": "CC0-1.0", "views": 0},
    {"doc": "b", "body": "Beta text.", "src": "https://x.org/b", "lic": None, "views": 1},
    {"doc": "c", "body": "Gamma text.", "src": None, "lic": "MIT", "views": 3},
]


def spec(path, **kw) -> CorpusSpec:
    base = {"path": str(path), "text": "body", "id": "doc", "url": "src", "license": "lic"}
    return CorpusSpec(**{**base, "default_license": "CC-BY-4.0", **kw})


def test_jsonl_and_parquet_give_the_same_seeds(tmp_path):
    jl = tmp_path / "c.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "c.parquet")
    a, b = list(seeds(spec(jl))), list(seeds(spec(tmp_path / "c.parquet")))
    assert a == b
    assert [s.id for s in a] == ["a", "b", "c"]
    assert [s.license for s in a] == ["CC0-1.0", "CC-BY-4.0", "MIT"]  # empty -> default_license
    assert a[0].url == "https://x.org/a" and a[2].url is None
    assert a[2].context()["views"] == 3 and a[2].context()["text"] == "Gamma text."


def test_folder_corpus_ids_are_relative_paths(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "one.md").write_text("# One\n\nFirst.")
    (tmp_path / "docs" / "sub" / "two.txt").write_text("Second.")
    (tmp_path / "docs" / "skip.bin").write_bytes(b"\x00")
    got = list(seeds(CorpusSpec(path="docs", default_license="CC0-1.0"), tmp_path))
    assert [(s.id, s.text, s.license) for s in got] == [
        ("one.md", "# One\n\nFirst.", "CC0-1.0"),
        ("sub/two.txt", "Second.", "CC0-1.0"),
    ]


def test_bad_corpora_say_which_file_and_line(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        list(seeds(spec(tmp_path / "missing.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc": "a", "body": "ok"}\n{not json\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not valid JSON"):
        list(seeds(spec(bad)))
    bad.write_text('{"doc": "a", "text": "no body field"}\n')
    with pytest.raises(CorpusError, match="no string field 'body'"):
        list(seeds(spec(bad)))


def test_digest_follows_the_bytes_not_the_path(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(ROWS[0]) + "\n")
    b.write_text(json.dumps(ROWS[0]) + "\n")
    # a file corpus is hashed with its own name: same bytes under another name is another corpus
    assert corpus_digest(spec(a), None) != corpus_digest(spec(b), None)
    before = corpus_digest(spec(a), None)
    a.write_text(json.dumps(ROWS[1]) + "\n")
    assert corpus_digest(spec(a), None) != before


def test_chunks_respect_the_limit_and_keep_every_word():
    count = token_counter(ChunkSpec(tokens=20))
    paragraphs = [" ".join(f"w{p}x{i}." for i in range(n)) for p, n in enumerate([5, 30, 8, 3])]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, 40, count)
    assert len(chunks) > 1 and all(count(c) <= 40 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())  # nothing lost or reordered
    assert chunk_text("short one.", 40, count) == ["short one."]


def test_chunked_seeds_get_numbered_ids(tmp_path):
    p = tmp_path / "c.jsonl"
    long = "\n\n".join(f"Paragraph {i} has a few words in it." for i in range(12))
    p.write_text(json.dumps({"doc": "long", "body": long}) + "\n" + json.dumps({"doc": "s", "body": "Tiny."}))
    got = list(seeds(spec(p, chunk={"tokens": 30})))
    assert [s.id for s in got[:-1]] == [f"long#{k}" for k in range(len(got) - 1)] and got[-1].id == "s"
    assert got[1].fields["chunk"] == 1


def test_repeat_sample_weight_and_limit(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    s = spec(p)
    plan = list(seed_plan(SeedUse(corpus="c", repeat=3), s, None, random.Random(0)))
    assert [(i.seed.id, i.repeat) for i in plan[:4]] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert count_items(SeedUse(corpus="c", repeat=3), s, None) == 9 == len(plan)
    assert count_items(SeedUse(corpus="c", limit=2), s, None) == 2
    draws = list(seed_plan(SeedUse(corpus="c", sample=2000, weight="views"), s, None, random.Random(1)))
    freq = Counter(i.seed.id for i in draws)
    assert "a" not in freq and 0.15 < freq["b"] / 2000 < 0.35  # weights 0 : 1 : 3
    again = list(seed_plan(SeedUse(corpus="c", sample=2000, weight="views"), s, None, random.Random(1)))
    assert [i.seed.id for i in again] == [i.seed.id for i in draws]
    with pytest.raises(ValueError, match="`weight` needs `sample`"):
        SeedUse(corpus="c", weight="views")
