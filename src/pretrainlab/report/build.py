"""Gather a run's files into the inputs of the HTML report, and write the report from them.

This is the collecting side: it reads manifests, records, metrics and the harness summary, and computes
the in-loop/harness comparison, so that preparing and rendering the page read plain data only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pretrainlab.evaluate.compare import comparison
from pretrainlab.evaluate.harness import SUMMARY, harness_dir
from pretrainlab.ledger import ledger_rows
from pretrainlab.pipeline import Pipeline
from pretrainlab.records import read_rows
from pretrainlab.report.html import render_report
from pretrainlab.report.prepare import DIVERSITY_KEYS
from pretrainlab.runs import GENERATIONS, METRICS, kept_path
from pretrainlab.train.callbacks import read_metrics


def _samples(kept_dir: Path, keys: list[str], n: int = 3) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in keys:
        texts = []
        for row in read_rows(kept_path(kept_dir, key), columns=["text"]):
            texts.append(row["text"])
            if len(texts) >= n:
                break
        out[key] = texts
    return out


def _harness_comparison(metrics: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """In-loop beside harness values when metrics.jsonl holds harness rows (`pretrainlab eval --harness`)."""
    if not any(r.get("kind") == "harness" for r in metrics):
        return None  # no harness section in the report
    return comparison(metrics)


def build_report(pipeline: Pipeline, out_path: Path | None = None) -> Path:
    """Write report.html for whatever stages of the design have finished; returns its path."""
    design = pipeline.design
    manifests = pipeline.finished()
    data_stats: list[dict[str, Any]] = []
    samples: dict[str, list[str]] = {}
    if "curate" in manifests:
        cur = manifests["curate"]["exercises"]
        gen = manifests.get("generate", {}).get("exercises", {})
        tok = manifests.get("tokenize", {})
        mix = tok.get("mixtures", {}).get("all", {})
        total_share = sum(ex.share for ex in design.exercises) or 1.0
        for ex in design.exercises:
            s = cur.get(ex.key, {})
            data_stats.append(
                {
                    "exercise": ex.key,
                    "capability": ex.capability,
                    "records": gen.get(ex.key, {}).get("records", s.get("kept", 0)),
                    "removed": sum(s.get("removed", {}).values()),
                    "bytes": s.get("bytes", 0),
                    "tokens": tok.get("tokens_per_exercise", {}).get(ex.key),
                    "share_planned": ex.share / total_share,
                    "share_actual": mix.get("share_actual", {}).get(ex.key),
                    "distinct_2": s.get("distinct_2"),
                    "compression_ratio": s.get("compression_ratio"),
                    "removed_by_reason": s.get("removed", {}),
                    "diversity": {k: s.get(k) for k in DIVERSITY_KEYS if s.get(k) is not None},
                    "warnings": s.get("warnings", []),
                }
            )
        samples = _samples(pipeline.stage_dir("curate"), [ex.key for ex in design.exercises])
    metrics: list[dict[str, Any]] = []
    generations: list[dict[str, Any]] = []
    final: list[dict[str, Any]] | None = None
    train_dir = pipeline.stage_dir("train")
    metrics = read_metrics(train_dir / METRICS)
    harness = None
    harness_path = harness_dir(pipeline.root) / SUMMARY  # `pretrainlab eval --harness`
    if harness_path.exists():
        harness = json.loads(harness_path.read_text())
        if harness.get("train_hash") != train_dir.name:
            harness = None  # the harness scored another training of this run
    if "train" in manifests:
        final = manifests["train"].get("final_scores")
        gen_path = train_dir / GENERATIONS
        if gen_path.exists():
            generations = json.loads(gen_path.read_text())
    out_path = out_path or pipeline.root / "report.html"
    return render_report(
        out_path,
        title=f"pretrainlab report: {design.name}",
        design=design.dump(),
        data_stats=data_stats,
        samples=samples,
        metrics=metrics,
        ledger=ledger_rows(manifests),
        generations=generations,
        final_scores=final,
        harness=harness,
        harness_comparison=_harness_comparison(metrics),
    )
