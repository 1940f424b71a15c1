"""The curate stage: exact dedup, decontamination against probes, diversity statistics.

Nothing is dropped silently: every removed record goes to ``removed-<exercise>.parquet`` with
its reason, and ``stats.json`` counts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from pretrainlab.config import Design
from pretrainlab.curate.decontam import ProbeIndex
from pretrainlab.curate.diversity import diversity_stats
from pretrainlab.progress import stage_progress
from pretrainlab.records import RECORD_SCHEMA, ParquetWriter, read_rows
from pretrainlab.runs import PROBES, STATS, kept_path, records_path, removed_path, write_json_atomic

REMOVED_SCHEMA = RECORD_SCHEMA.append(pa.field("reason", pa.string()))


def _held_out(meta: dict[str, Any]) -> bool:
    """Probes meant to be in training (seen people's QA, every 1-op sum mod 23) are not contamination."""
    return meta.get("split") != "seen" and not meta.get("in_training", False)


def stage_config(design: Design) -> dict[str, Any]:
    """What the curate stage's hash covers."""
    return design.curate.model_dump(mode="json")


def run_stage(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    gen = inputs["generate"].dir
    cfg = design.curate
    probes = pq.read_table(gen / PROBES).to_pylist()
    index = ProbeIndex([p for p in probes if _held_out(json.loads(p["meta"]))], n=cfg.ngram)
    stats: dict[str, Any] = {}
    for ex in design.exercises:
        source = records_path(gen, ex.key)
        first_with_text: dict[str, str] = {}  # text hash -> id of the first record kept with that text
        kept_texts: list[str] = []
        removed: dict[str, int] = {}
        with (
            ParquetWriter(kept_path(out, ex.key), RECORD_SCHEMA) as kept,
            ParquetWriter(removed_path(out, ex.key), REMOVED_SCHEMA) as dropped,
            stage_progress(console, "curate", transient=True) as progress,
        ):
            total = pq.ParquetFile(source).metadata.num_rows
            task = progress.add(ex.key, total=total)
            for n, row in enumerate(read_rows(source), 1):
                reason = None
                if cfg.dedup and row["text_hash"] in first_with_text:
                    reason = f"duplicate of {first_with_text[row['text_hash']]}"
                elif cfg.decontaminate and (hit := index.match(row["text"])) is not None:
                    reason = f"contains probe {hit}"
                if reason is None:
                    first_with_text[row["text_hash"]] = row["id"]
                    kept.write(row)
                    kept_texts.append(row["text"])
                else:
                    dropped.write({**row, "reason": reason})
                    key = reason.split(" ")[0]
                    removed[key] = removed.get(key, 0) + 1
                if n % 1000 == 0 or n == total:
                    progress.update(task, n, info=f"removed {sum(removed.values())}")
            progress.finish(task)
        stats[ex.key] = {
            "capability": ex.capability,
            "kept": len(kept_texts),
            "removed": removed,
            "bytes": sum(len(t.encode("utf-8")) for t in kept_texts),
            **diversity_stats(kept_texts),
        }
        n_removed = sum(removed.values())
        if n_removed:
            console.print(f"  curate {ex.key}: removed {n_removed} ({removed})")
    write_json_atomic(out / STATS, stats)
    return {
        "exercises": stats,
        "kept": sum(s["kept"] for s in stats.values()),
        "removed": sum(sum(s["removed"].values()) for s in stats.values()),
    }
