"""The data stages give the same bytes inline, on a local process pool and on Ray: an executor changes
how fast, never what."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from pretrainlab.design import parse_design
from pretrainlab.pipeline import Pipeline


def stage_files(result) -> dict[str, str]:
    """Every file a stage wrote but its manifest (which holds timings), by name, as a hash."""
    return {
        str(p.relative_to(result.dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(result.dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture
def mixed_design(tmp_path, tiny_design) -> dict:
    """Procedural exercises, natural text with a near-duplicate and a filter, near-dup removal on."""
    path = tmp_path / "web.jsonl"
    with open(path, "w") as f:
        for i in range(12):
            text = " ".join(f"w{(i * 7 + j) % 97}" for j in range(60))
            f.write(json.dumps({"id": f"web{i}", "text": text}) + "\n")
        f.write(json.dumps({"id": "copy", "text": " ".join(f"w{j % 97}" for j in range(59)) + " x"}) + "\n")
    d = copy.deepcopy(tiny_design)
    d["corpora"] = {"web": {"path": str(path), "id": "id"}}
    d["exercises"].append(
        {
            "kind": "corpus",
            "name": "web",
            "capability": "natural",
            "seeds": {"corpus": "web"},
            "filters": "default",
        }
    )
    d["curate"] = {"near_dup": {"threshold": 0.8}}
    return d


def run(design: dict, root: Path, **executor) -> dict[str, dict[str, str]]:
    pipeline = Pipeline(parse_design({**design, "executor": executor}), root)
    return {stage: stage_files(pipeline.run_stage(stage)) for stage in ("generate", "curate")}


def test_local_pool_and_inline_give_the_same_bytes(mixed_design, tmp_path):
    inline = run(mixed_design, tmp_path / "inline", workers=1)
    pooled = run(mixed_design, tmp_path / "pool", workers=2)
    assert inline == pooled
    assert "records-web.parquet" in inline["generate"] and "removed-web.parquet" in inline["curate"]


def test_a_pool_reports_progress_by_exercise(mixed_design, tmp_path, monkeypatch):
    monkeypatch.setenv("PRETRAINLAB_PROGRESS_EVERY", "0")
    out = io.StringIO()
    pipeline = Pipeline(
        parse_design({**mixed_design, "executor": {"workers": 2}}), tmp_path, console=Console(file=out)
    )
    pipeline.run_stage("curate")
    log = out.getvalue()
    for stage in ("generate", "curate"):
        assert re.search(rf"^\S+ \S+ {stage} 4 exercises on local: 4/4 exercises .* done in ", log, re.M), log


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster shared by the tests that need it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_bytes_as_local(ray_cluster, mixed_design, tmp_path):
    local = run(mixed_design, tmp_path / "local", workers=1)
    on_ray = run(mixed_design, tmp_path / "ray", kind="ray")
    assert on_ray == local
