"""The generate stage: make every exercise's records and probes, with provenance, into Parquet files.

Each exercise is built by its kind (`exercises.registry`) with a seed derived from the design seed and
the exercise's name. Whatever a kind needs beyond procedure (engines, caches, ledger rows, a check that
its output is complete) comes through the kind's hooks (`exercises.base.Exercise`): this stage knows
no kind.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import xxhash
from rich.console import Console

from pretrainlab.config import Design
from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.executors import executor_for
from pretrainlab.exercises.base import Exercise, GenerateContext
from pretrainlab.exercises.registry import build_exercise, exercise_params, resolve_exercise
from pretrainlab.progress import stage_progress
from pretrainlab.records import PROBE_SCHEMA, RECORD_SCHEMA, ParquetWriter, make_probe, make_record, read_rows
from pretrainlab.runs import PROBES, records_path


def exercise_seed(design_seed: int, exercise_key: str) -> int:
    """Each exercise's seed, derived from the design seed and its name: adding an exercise
    leaves the others' data unchanged."""
    return xxhash.xxh64_intdigest(f"{design_seed}:{exercise_key}".encode()) & ((1 << 63) - 1)


def stage_config(design: Design) -> dict[str, Any]:
    """What the generate stage's hash covers: the seed, the exercises, their kinds' code versions (new
    code means new data) and whatever else each kind says its output depends on (input files' bytes)."""
    d = design.dump()
    config: dict[str, Any] = {
        "seed": d["seed"],
        # an exercise's filters are the curate stage's business: editing them re-uses the generated data
        "exercises": [{k: v for k, v in e.items() if k != "filters"} for e in d["exercises"]],
        "world_versions": {ex.key: resolve_exercise(ex.kind).version for ex in design.exercises},
    }
    for ex in design.exercises:
        cls = resolve_exercise(ex.kind)
        for name, value in cls.hash_inputs(exercise_params(ex, cls), design).items():
            config.setdefault(name, {}).update(value)
    return config


def write_exercise(
    ex: ExerciseConfig, exercise: Exercise, records: ParquetWriter, probes: ParquetWriter, tick
) -> dict[str, Any]:
    """Write one exercise's records and probes; returns its counts."""
    n_docs = n_bytes = 0
    for doc in exercise.documents():
        records.write(
            make_record(
                doc.text,
                key=doc.key if doc.key is not None else str(n_docs),
                exercise=ex.key,
                capability=ex.capability,
                params=doc.params,
                generator=exercise.generator,
                meta=doc.meta,
                source_id=doc.source_id,
                source_license=doc.source_license,
            )
        )
        n_docs += 1
        n_bytes += len(doc.text.encode("utf-8"))
        if n_docs % 1000 == 0:
            tick(1000)
    tick(n_docs % 1000)
    n_probes = 0
    for p in exercise.probes():
        probes.write(
            make_probe(
                p.prompt, p.answer, exercise=ex.key, capability=ex.capability, meta=p.meta, choices=p.choices
            )
        )
        n_probes += 1
    counts = {"records": n_docs, "bytes": n_bytes, "probes": n_probes, "generator": exercise.generator}
    return {**counts, **exercise.summary()}


def _probes_part(out: Path, key: str) -> Path:
    """One exercise's probes, merged into probes.parquet in design order when every exercise is done."""
    return out / f".probes-{key}.parquet"


def generate_apart(design: Design, key: str, out: Path) -> dict[str, Any]:
    """One exercise of a kind that needs nothing of the stage, made into its files: an executor's task."""
    ex = next(e for e in design.exercises if e.key == key)
    exercise = build_exercise(ex, exercise_seed(design.seed, key))
    exercise.setup(GenerateContext(design, key, out, None, lambda done, total, info: None))
    with (
        ParquetWriter(records_path(out, key), RECORD_SCHEMA) as records,
        ParquetWriter(_probes_part(out, key), PROBE_SCHEMA) as probes,
    ):
        return write_exercise(ex, exercise, records, probes, lambda n: None)


def run_stage(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    kinds = {ex.kind: resolve_exercise(ex.kind) for ex in design.exercises}
    executor = executor_for(design.executor)
    apart = [] if executor.inline else [ex.key for ex in design.exercises if kinds[ex.kind].independent]
    per_exercise: dict[str, Any] = {}
    self_counting: set[int] = set()  # tasks whose exercise reports its own progress (ctx.progress)
    with ExitStack() as stack:
        progress = stack.enter_context(stage_progress(console, "generate", transient=True))
        if apart:
            task = progress.add(
                f"{len(apart)} exercises on {executor.name}", total=len(apart), unit="exercises"
            )
            tasks = [(design, key, out) for key in apart]
            done = executor.map(generate_apart, tasks, lambda n: progress.update(task, n))
            per_exercise.update(zip(apart, done, strict=True))
            progress.finish(task)
        # each kind's shared resources (engines, caches), closed however the stage ends
        resources = {
            kind: stack.enter_context(cls.resources(design, out, console))
            for kind, cls in kinds.items()
            if any(ex.kind == kind and ex.key not in apart for ex in design.exercises)
        }
        for ex in design.exercises:
            if ex.key in apart:
                continue
            exercise = build_exercise(ex, exercise_seed(design.seed, ex.key))
            task = progress.add(ex.key, unit=exercise.progress_unit)

            def report(done: int, total: int | None, info: str, t: int = task) -> None:
                self_counting.add(t)
                progress.update(t, done, total=total, info=info)

            def tick(n: int, t: int = task) -> None:
                """`n` more documents written, unless the exercise counts its own progress (an llm
                exercise counts items, and an item gives several documents or none)."""
                if t not in self_counting:
                    progress.advance(t, n)

            exercise.setup(GenerateContext(design, ex.key, out, resources[ex.kind], report))
            with (
                ParquetWriter(records_path(out, ex.key), RECORD_SCHEMA) as records,
                ParquetWriter(_probes_part(out, ex.key), PROBE_SCHEMA) as probes,
            ):
                per_exercise[ex.key] = write_exercise(ex, exercise, records, probes, tick)
            progress.finish(task)
            exercise.finish(per_exercise[ex.key], console)
    with ParquetWriter(out / PROBES, PROBE_SCHEMA) as probes:
        for ex in design.exercises:
            for row in read_rows(_probes_part(out, ex.key)):
                probes.write(row)
            _probes_part(out, ex.key).unlink()
    per_exercise = {ex.key: per_exercise[ex.key] for ex in design.exercises}
    total_bytes = sum(v["bytes"] for v in per_exercise.values())
    ledger: dict[str, Any] = {"tokens": total_bytes // 4, "note": "procedural worlds"}
    for kind, cls in kinds.items():
        ledger.update(
            cls.ledger(design, {ex.key: per_exercise[ex.key] for ex in design.exercises if ex.kind == kind})
        )
    return {
        "exercises": per_exercise,
        "records": sum(v["records"] for v in per_exercise.values()),
        "probes": sum(v["probes"] for v in per_exercise.values()),
        "bytes": total_bytes,
        # ~4 bytes per token for English-like text, before a tokenizer exists
        "token_estimate": total_bytes // 4,
        "ledger": ledger,
    }
