"""The curate stage on a planted corpus: every kind of removal happens, says why, and names what it kept;
number-only variants stay; a collapsed `llm` exercise raises a warning."""

from __future__ import annotations

import json
import random

import pytest

from pretrainlab.design import parse_design
from pretrainlab.pipeline import Pipeline
from pretrainlab.records import read_rows
from pretrainlab.report.build import build_report

VOCAB = [f"w{i}" for i in range(3000)]


def planted(tmp_path) -> tuple[list[dict], dict[str, str]]:
    """Corpus documents with known fates: base texts, an exact copy, a near copy, number-only variants,
    a benchmark leak, a refusal and a degenerate loop."""
    rng = random.Random(0)
    base = [" ".join(rng.choice(VOCAB) for _ in range(120)) for _ in range(30)]
    words = base[0].split()
    near = " ".join(words[:-3] + ["x1", "x2", "x3"])  # 3 of 116 5-grams differ: Jaccard ~0.95
    templated = [
        f"Person {i} was born on {3 + i} March {1931 + 7 * i} in Lyon and studied {i % 4 + 2} years at "
        f"the University of Padua before working {10 + i} years as an engineer in Oslo with {20 + 3 * i} "
        "colleagues."
        for i in range(6)
    ]
    bench_item = (
        "the quick brown fox jumps over the lazy dog while seven wizards quietly judge the boxing match"
    )
    docs = [*base, base[1], near, *templated]
    docs += [
        f"{base[2]} and then {bench_item} said the narrator",
        "As an AI language model, I cannot do that.",
    ]
    docs += ["The answer is " + "again and " * 30 + "again"]
    rows = [{"id": f"d{i}", "text": t, "lic": "CC0-1.0"} for i, t in enumerate(docs)]
    with open(tmp_path / "bench.jsonl", "w") as f:
        f.write(json.dumps({"question": bench_item, "answer": "yes"}) + "\n")
    fates = {"d30": "duplicate", "d31": "near-duplicate", "d38": "benchmark:quiz", "d39": "filter:refusal"}
    fates["d40"] = "filter:loop"
    return rows, fates


def test_planted_corpus_removals_are_complete_and_explained(tmp_path, tiny_design):
    rows, fates = planted(tmp_path)
    with open(tmp_path / "web.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tiny_design["corpora"] = {"web": {"path": str(tmp_path / "web.jsonl"), "id": "id", "license": "lic"}}
    tiny_design["exercises"].append(
        {
            "kind": "corpus",
            "name": "web",
            "capability": "natural",
            "share": 0.2,
            "seeds": {"corpus": "web"},
            "filters": {"refusals": {}, "loops": {}},
        }
    )
    tiny_design["curate"] = {
        "near_dup": {"threshold": 0.8},
        "benchmarks": [
            {"name": "quiz", "path": str(tmp_path / "bench.jsonl"), "fields": ["question", "answer"]}
        ],
    }
    pipeline = Pipeline(parse_design(tiny_design), tmp_path / "runs")
    result = pipeline.run_stage("curate")
    removed = {r["source_id"]: r["reason"] for r in read_rows(result.dir / "removed-web.parquet")}
    kept = {r["source_id"]: r for r in read_rows(result.dir / "kept-web.parquet")}
    assert {k: v.split(" ")[0] for k, v in removed.items()} == fates
    assert removed["d30"] == f"duplicate of {kept['d1']['id']}"
    assert removed["d31"].startswith(f"near-duplicate of {kept['d0']['id']} (Jaccard ~0.9")
    assert removed["d38"].startswith("benchmark:quiz item 1")
    assert all(f"d{i}" in kept for i in range(32, 38))  # the number-only variants
    stats = result.manifest["exercises"]["web"]
    assert stats["removed"] == {
        "benchmark:quiz": 1,
        "duplicate": 1,
        "filter:loop": 1,
        "filter:refusal": 1,
        "near-duplicate": 1,
    }
    assert stats["kept"] == len(kept) == len(rows) - 5
    assert stats["near_dup_share"] == pytest.approx(2 / (len(rows) - 4), abs=1e-4)  # one cluster of two
    # procedural exercises keep their data: no filters, and templated texts are not near-duplicates
    assert result.manifest["exercises"]["khop"]["removed"] == {}
    page = build_report(pipeline).read_text()
    assert "Removed, by reason" in page and "benchmark:quiz" in page and "in near-dup clusters" in page


def test_a_collapsed_llm_exercise_warns(tmp_path):
    pytest.importorskip("openai")
    from pretrainlab.engines.fake_server import FakeServer

    seeds = tmp_path / "seeds.jsonl"
    rng = random.Random(1)
    with open(seeds, "w") as f:
        for i in range(60):
            f.write(
                json.dumps({"id": f"s{i}", "text": " ".join(rng.choice(VOCAB) for _ in range(80))}) + "\n"
            )
    one, two = "The tide rises and falls twice a day.", "The moon pulls the sea toward it as it passes."

    def collapsed(req: dict) -> str:
        """The same two sentences for every seed, in one order or the other, naming the seed's first word."""
        word = req["messages"][-1]["content"].split()[1]
        return f"{one} {two} {one} {word}." if len(word) % 2 else f"{two} {one} {two} {word}."

    def design(url: str) -> dict:
        return {
            "name": "collapse",
            "corpora": {"wiki": {"path": str(seeds)}},
            "llm": {"endpoints": [{"name": "fake", "url": url, "model": "m"}], "cache": False},
            "exercises": [
                {
                    "kind": "llm",
                    "name": "rephrase",
                    "capability": "c",
                    "seeds": {"corpus": "wiki"},
                    "prompt": [{"role": "user", "content": "Rewrite: {{ seed.text }}"}],
                }
            ],
        }

    with FakeServer(reply=collapsed) as srv:
        pipeline = Pipeline(parse_design(design(srv.base_url)), tmp_path / "runs")
        result = pipeline.run_stage("curate")
    warnings = result.manifest["warnings"]
    assert warnings and all(w.startswith("exercise 'rephrase':") for w in warnings)
    assert any("in its seeds" in w for w in warnings)
    assert result.manifest["exercises"]["rephrase"]["warnings"] == warnings
    page = build_report(pipeline).read_text()
    assert "Collapse warnings" in page and "in its seeds" in page
