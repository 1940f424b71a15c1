"""The curate stage: exact dedup, quality filters, decontamination, near-duplicates, the collapse watch.

Per exercise, in order: exact duplicates (same text hash; the reason names the record kept), the
exercise's own `filters` (length, repetition, loops, refusals, failed verdicts; procedural kinds repeat
by design, so filters apply only where the design asks), the design's held-out probes, outside
benchmark files, then MinHash near-duplicates among what is left (`curate.near_dup`; each removed
record names the record its cluster keeps and the estimated similarity). Nothing is dropped silently:
every removed record goes to ``removed-<exercise>.parquet`` with its reason, and ``stats.json`` counts
them by reason, with diversity measures per exercise and collapse warnings where an `llm` exercise's
text is markedly less diverse than its seed documents or than the rest of the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from pretrainlab.config import Design
from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.config.llm import LLMExercise
from pretrainlab.corpora import seeds
from pretrainlab.curate.benchmarks import Benchmarks, load_benchmarks
from pretrainlab.curate.decontam import ProbeIndex
from pretrainlab.curate.diversity import collapse_warnings, diversity_stats
from pretrainlab.curate.filters import Filters, reason_class
from pretrainlab.curate.minhash import choose_bands, describe, find_near_duplicates
from pretrainlab.executors import executor_for
from pretrainlab.progress import stage_progress
from pretrainlab.records import RECORD_SCHEMA, ParquetWriter, read_rows
from pretrainlab.runs import PROBES, STATS, kept_path, records_path, removed_path, write_json_atomic

REMOVED_SCHEMA = RECORD_SCHEMA.append(pa.field("reason", pa.string()))


def _held_out(meta: dict[str, Any]) -> bool:
    """Probes meant to be in training (seen people's QA, every 1-op sum mod 23) are not contamination."""
    return meta.get("split") != "seen" and not meta.get("in_training", False)


def stage_config(design: Design) -> dict[str, Any]:
    """What the curate stage's hash covers: the curate section and each exercise's filters."""
    return {
        **design.curate.model_dump(mode="json"),
        "filters": {
            ex.key: ex.filters.model_dump(mode="json") for ex in design.exercises if ex.filters is not None
        },
    }


class _Screen:
    """The first pass over one exercise's records: exact duplicates, filters, probes, benchmarks."""

    def __init__(self, design: Design, ex: ExerciseConfig, probes: ProbeIndex, benchmarks: Benchmarks | None):
        self.dedup = design.curate.dedup
        self.decontaminate = design.curate.decontaminate
        self.filters = Filters(ex.filters) if ex.filters is not None else None
        self.probes = probes
        self.benchmarks = benchmarks
        self.first_with_text: dict[str, str] = {}  # text hash -> id of the first record kept with it

    def reason(self, row: dict[str, Any]) -> str | None:
        """Why `row` is removed, or None to keep it (for now: near-duplicates come after)."""
        if self.dedup and row["text_hash"] in self.first_with_text:
            return f"duplicate of {self.first_with_text[row['text_hash']]}"
        if self.filters is not None and (why := self.filters.check(row)) is not None:
            return why
        if self.decontaminate and (hit := self.probes.match(row["text"])) is not None:
            return f"contains probe {hit}"
        if self.benchmarks is not None and (found := self.benchmarks.match(row["text"])) is not None:
            name, item = found
            return f"benchmark:{name} item {item}"
        self.first_with_text[row["text_hash"]] = row["id"]
        return None


def _indexes(design: Design, gen: Path) -> tuple[ProbeIndex, Benchmarks | None]:
    """What training text is matched against: the held-out probes, and the outside benchmarks."""
    cfg = design.curate
    probes = pq.read_table(gen / PROBES).to_pylist()
    index = ProbeIndex([p for p in probes if _held_out(json.loads(p["meta"]))], n=cfg.ngram)
    benchmarks = load_benchmarks(cfg.benchmarks, design.base_dir or Path(".")) if cfg.benchmarks else None
    return index, benchmarks


def curate_apart(design: Design, key: str, gen: Path, out: Path) -> dict[str, Any]:
    """One exercise curated into its kept and removed files: an executor's task; returns its stats."""
    ex = next(e for e in design.exercises if e.key == key)
    screen = _Screen(design, ex, *_indexes(design, gen))
    return _curate_exercise(design, ex, gen, out, screen, Console(quiet=True))


def run_stage(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    gen = inputs["generate"].dir
    near = design.curate.near_dup
    if near is not None:
        bands, rows = choose_bands(near.threshold, near.num_perm)
        console.print(
            f"  near-duplicates at Jaccard {near.threshold:g}: {bands} bands x {rows} rows of "
            f"{near.num_perm}; {describe(bands, rows)}"
        )
    executor = executor_for(design.executor)
    stats: dict[str, Any] = {}
    if executor.inline:
        indexes = _indexes(design, gen)
        for ex in design.exercises:
            stats[ex.key] = _curate_exercise(design, ex, gen, out, _Screen(design, ex, *indexes), console)
    else:
        keys = [ex.key for ex in design.exercises]
        with stage_progress(console, "curate", transient=True) as progress:
            task = progress.add(
                f"{len(keys)} exercises on {executor.name}", total=len(keys), unit="exercises"
            )
            done = executor.map(
                curate_apart, [(design, k, gen, out) for k in keys], lambda n: progress.update(task, n)
            )
            progress.finish(task)
        stats.update(zip(keys, done, strict=True))
        for key, s in stats.items():
            if s["removed"]:
                console.print(f"  curate {key}: removed {sum(s['removed'].values())} ({s['removed']})")
    warnings = _collapse_watch(design, out, stats)
    for line in warnings:
        console.print(f"  [yellow]collapse warning[/yellow] {line}", highlight=False)
    write_json_atomic(out / STATS, stats)
    return {
        "exercises": stats,
        "kept": sum(s["kept"] for s in stats.values()),
        "removed": sum(sum(s["removed"].values()) for s in stats.values()),
        "warnings": warnings,
    }


def _curate_exercise(
    design: Design, ex: ExerciseConfig, gen: Path, out: Path, screen: _Screen, console: Console
) -> dict[str, Any]:
    """Curate one exercise's records into its kept and removed files; returns its stats."""
    source = records_path(gen, ex.key)
    removed: dict[str, int] = {}
    candidates: list[dict[str, Any]] = []
    with (
        ParquetWriter(removed_path(out, ex.key), REMOVED_SCHEMA) as dropped,
        stage_progress(console, "curate", transient=True) as progress,
    ):

        def drop(row: dict[str, Any], reason: str) -> None:
            dropped.write({**row, "reason": reason})
            key = reason_class(reason)
            removed[key] = removed.get(key, 0) + 1

        total = pq.ParquetFile(source).metadata.num_rows
        task = progress.add(ex.key, total=total)
        for n, row in enumerate(read_rows(source), 1):
            if (reason := screen.reason(row)) is None:
                candidates.append(row)
            else:
                drop(row, reason)
            if n % 1000 == 0 or n == total:
                progress.update(task, n, info=f"removed {sum(removed.values())}")
        progress.finish(task)
        near_share = None
        near = design.curate.near_dup
        if near is not None and candidates:
            found = find_near_duplicates(
                [r["text"] for r in candidates],
                threshold=near.threshold,
                ngram=near.ngram,
                num_perm=near.num_perm,
                seed=near.seed,
                normalize_numbers=near.normalize_numbers,
            )
            for i, (rep, sim) in found.removed.items():
                drop(candidates[i], f"near-duplicate of {candidates[rep]['id']} (Jaccard ~{sim:.2f})")
            near_share = sum(found.cluster_sizes.values()) / len(candidates)
            candidates = [r for r, keep in zip(candidates, found.keep.tolist(), strict=True) if keep]
    with ParquetWriter(kept_path(out, ex.key), RECORD_SCHEMA) as kept:
        for row in candidates:
            kept.write(row)
    texts = [r["text"] for r in candidates]
    n_removed = sum(removed.values())
    if n_removed:
        console.print(f"  curate {ex.key}: removed {n_removed} ({removed})")
    return {
        "capability": ex.capability,
        "kind": ex.kind,
        "kept": len(texts),
        "removed": dict(sorted(removed.items())),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        **diversity_stats(texts, near_dup_share=near_share),
    }


def _collapse_watch(design: Design, out: Path, stats: dict[str, Any]) -> list[str]:
    """Warnings for `llm` exercises whose text is markedly less diverse than their seeds or than the rest
    of the corpus (procedural kinds repeat by design: their diversity is reported, not warned about)."""
    warnings: list[str] = []
    if not any(isinstance(ex, LLMExercise) for ex in design.exercises):
        return warnings
    kept = {
        ex.key: [r["text"] for r in read_rows(kept_path(out, ex.key), columns=["text"])]
        for ex in design.exercises
    }
    for ex in design.exercises:
        if not isinstance(ex, LLMExercise) or not kept[ex.key]:
            continue
        seed_stats = None
        if ex.seeds is not None:
            spec = design.corpora[ex.seeds.corpus]
            seed_stats = diversity_stats([s.text for s in seeds(spec, design.base_dir)])
        rest = [t for key, texts in kept.items() if key != ex.key for t in texts]
        corpus_stats = diversity_stats(rest) if rest else None
        found = collapse_warnings(stats[ex.key], seed_stats, corpus_stats, exercise=ex.key)
        stats[ex.key]["warnings"] = found
        warnings += found
    return warnings
