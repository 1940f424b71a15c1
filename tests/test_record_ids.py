"""Record ids name records, not texts: unique in every shipped example, the same on every re-run, and
the curate stage's "duplicate of" names a record that exists (the LLM recipes: test_recipes)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pretrainlab.design import load_design, parse_design
from pretrainlab.pipeline import Pipeline
from pretrainlab.records import read_rows

ROOT = Path(__file__).resolve().parents[1]
PROCEDURAL = sorted(ROOT.glob("examples/*.yaml"))


def ids_by_file(stage_dir: Path) -> dict[str, list[str]]:
    return {
        p.name: pq.read_table(p, columns=["id"]).column("id").to_pylist()
        for p in sorted(stage_dir.glob("records-*.parquet"))
    }


@pytest.mark.parametrize("path", PROCEDURAL, ids=[p.stem for p in PROCEDURAL])
def test_shipped_example_ids_are_unique_and_stable(path, tmp_path):
    design = load_design(path)
    first = ids_by_file(Pipeline(design, tmp_path / "a").run_stage("generate").dir)
    assert first and all(ids for ids in first.values())
    for name, ids in first.items():
        assert len(set(ids)) == len(ids), f"{path.name} {name}: {len(ids) - len(set(ids))} repeated ids"
    again = ids_by_file(Pipeline(design, tmp_path / "b").run_stage("generate").dir)
    assert again == first


def test_equal_texts_get_distinct_ids_and_dedup_names_the_kept_one(tmp_path):
    pytest.importorskip("openai")
    from pretrainlab.engines.fake_server import FakeServer

    def design(url: str) -> dict:
        return {
            "name": "same-text",
            "seed": 3,
            "llm": {"endpoints": [{"name": "fake", "url": url, "model": "m"}], "cache": False},
            "exercises": [
                {
                    "kind": "llm",
                    "name": "echo",
                    "capability": "c",
                    "count": 12,
                    "samplers": {"n": {"kind": "int", "low": 0, "high": 2}},
                    "prompt": [{"role": "user", "content": "say it ({{ n }})"}],
                }
            ],
        }

    with FakeServer(reply=lambda req: "The same answer every time.") as srv:
        runs = [Pipeline(parse_design(design(srv.base_url)), tmp_path / r) for r in ("a", "b")]
        gen = [p.run_stage("generate").dir for p in runs]
        curated = runs[0].run_stage("curate").dir
    rows = list(read_rows(gen[0] / "records-echo.parquet"))
    assert len(rows) == 12
    assert len({r["id"] for r in rows}) == 12 and len({r["text_hash"] for r in rows}) == 1
    assert ids_by_file(gen[0]) == ids_by_file(gen[1])

    kept = list(read_rows(curated / "kept-echo.parquet"))
    removed = list(read_rows(curated / "removed-echo.parquet"))
    assert len(kept) == 1 and len(removed) == 11
    assert {r["reason"] for r in removed} == {f"duplicate of {kept[0]['id']}"}
