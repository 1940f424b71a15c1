"""`kind: corpus`: natural text passes through as training text, with its source id and license, curated
and mixed like any exercise."""

from __future__ import annotations

import json

import pytest

from pretrainlab.design import DesignError, parse_design
from pretrainlab.pipeline import Pipeline
from pretrainlab.records import read_rows


def design(tmp_path, tiny_design: dict, **seeds) -> dict:
    path = tmp_path / "web.jsonl"
    with open(path, "w") as f:
        for i in range(6):
            text = f"Document {i} says that tides follow the moon and that bees {i} dance to share food."
            f.write(json.dumps({"id": f"web{i}", "body": text, "lic": "CC-BY-4.0" if i % 2 else ""}) + "\n")
    tiny_design["corpora"] = {
        "web": {"path": str(path), "text": "body", "id": "id", "license": "lic", "default_license": "CC0-1.0"}
    }
    tiny_design["exercises"].append(
        {
            "kind": "corpus",
            "name": "web",
            "capability": "natural",
            "share": 0.2,
            "seeds": {"corpus": "web", **seeds},
        }
    )
    return tiny_design


def test_corpus_documents_become_records_with_provenance(tmp_path, tiny_design):
    d = parse_design(design(tmp_path, tiny_design, repeat=2))
    pipeline = Pipeline(d, tmp_path / "runs")
    gen = pipeline.run_stage("generate")
    rows = list(read_rows(gen.dir / "records-web.parquet"))
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert [r["source_id"] for r in rows[:4]] == ["web0", "web0", "web1", "web1"]
    assert {r["source_license"] for r in rows} == {"CC0-1.0", "CC-BY-4.0"}
    assert rows[0]["text"].startswith("Document 0 says") and rows[0]["generator"] == "corpus:web@1"
    assert json.loads(rows[1]["params"])["seed"] == {"corpus": "web", "id": "web0", "use": 1}
    # curated like the rest: the repeats are exact duplicates of the first use
    curated = pipeline.run_stage("curate")
    kept = list(read_rows(curated.dir / "kept-web.parquet"))
    assert [r["source_id"] for r in kept] == [f"web{i}" for i in range(6)]
    tokenized = pipeline.run_stage("tokenize")
    assert tokenized.manifest["mixtures"]["all"]["share_actual"]["web"] > 0.1  # share 0.2 of the budget


def test_a_corpus_exercise_names_a_known_corpus(tmp_path, tiny_design):
    data = design(tmp_path, tiny_design)
    data["exercises"][-1]["seeds"]["corpus"] = "nope"
    with pytest.raises(DesignError, match=r"exercises\[3\]\.seeds\.corpus: 'nope' is not in `corpora`"):
        parse_design(data)
