"""The generate stage: run every exercise's world, write records and probes with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xxhash
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pretrainlab.design import Design, Exercise
from pretrainlab.generate.records import PROBE_SCHEMA, RECORD_SCHEMA, ParquetWriter, make_probe, make_record


def exercise_seed(design_seed: int, exercise_key: str) -> int:
    """Each exercise's seed, derived from the design seed and its name: adding an exercise
    leaves the others' data unchanged."""
    return xxhash.xxh64_intdigest(f"{design_seed}:{exercise_key}".encode()) & ((1 << 63) - 1)


def records_path(out: Path, key: str) -> Path:
    return out / f"records-{key}.parquet"


def generate_exercise(
    ex: Exercise, design_seed: int, records: ParquetWriter, probes: ParquetWriter, tick
) -> dict[str, Any]:
    """Write one exercise's records and probes; returns its counts."""
    world = ex.world_class()(ex.world_params(), seed=exercise_seed(design_seed, ex.key))
    n_docs = n_bytes = 0
    for doc in world.documents():
        records.write(
            make_record(
                doc.text,
                exercise=ex.key,
                capability=ex.capability,
                params=doc.params,
                generator=world.generator,
            )
        )
        n_docs += 1
        n_bytes += len(doc.text.encode("utf-8"))
        if n_docs % 1000 == 0:
            tick(1000)
    tick(n_docs % 1000)
    n_probes = 0
    for p in world.probes():
        probes.write(
            make_probe(
                p.prompt, p.answer, exercise=ex.key, capability=ex.capability, meta=p.meta, choices=p.choices
            )
        )
        n_probes += 1
    return {"records": n_docs, "bytes": n_bytes, "probes": n_probes, "generator": world.generator}


def run_generate(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    per_exercise: dict[str, Any] = {}
    with (
        ParquetWriter(out / "probes.parquet", PROBE_SCHEMA) as probes,
        Progress(
            TextColumn("generate {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        for ex in design.exercises:
            task = progress.add_task(ex.key, total=None)
            with ParquetWriter(records_path(out, ex.key), RECORD_SCHEMA) as records:
                per_exercise[ex.key] = generate_exercise(
                    ex, design.seed, records, probes, lambda n, t=task: progress.advance(t, n)
                )
            progress.update(task, total=per_exercise[ex.key]["records"])
    total_bytes = sum(v["bytes"] for v in per_exercise.values())
    return {
        "exercises": per_exercise,
        "records": sum(v["records"] for v in per_exercise.values()),
        "probes": sum(v["probes"] for v in per_exercise.values()),
        "bytes": total_bytes,
        # ~4 bytes per token for English-like text, before a tokenizer exists
        "token_estimate": total_bytes // 4,
        "ledger": {"tokens": total_bytes // 4, "note": "procedural worlds"},
    }
