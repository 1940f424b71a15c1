"""The generate stage: run every exercise's world, write records and probes with provenance."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from rich.console import Console

from pretrainlab.design import Design, Exercise
from pretrainlab.generate.records import PROBE_SCHEMA, RECORD_SCHEMA, ParquetWriter, make_probe, make_record
from pretrainlab.progress import stage_progress


def exercise_seed(design_seed: int, exercise_key: str) -> int:
    """Each exercise's seed, derived from the design seed and its name: adding an exercise
    leaves the others' data unchanged."""
    return xxhash.xxh64_intdigest(f"{design_seed}:{exercise_key}".encode()) & ((1 << 63) - 1)


def records_path(out: Path, key: str) -> Path:
    return out / f"records-{key}.parquet"


@dataclass
class GenerateContext:
    """What the generate stage hands each world in `World.setup` (procedural worlds ignore it)."""

    design: Design
    exercise: str
    out: Path
    pool: Any  # EndpointPool when the design has an `llm` section
    cache: Any  # RequestCache when llm.cache is on
    progress: Callable[[int, int | None, str], None]


def generate_exercise(
    ex: Exercise, design_seed: int, records: ParquetWriter, probes: ParquetWriter, tick, ctx=None
) -> dict[str, Any]:
    """Write one exercise's records and probes; returns its counts."""
    world = ex.world_class()(ex.world_params(), seed=exercise_seed(design_seed, ex.key))
    if ctx is not None:
        world.setup(ctx)
    n_docs = n_bytes = 0
    for doc in world.documents():
        records.write(
            make_record(
                doc.text,
                key=doc.key if doc.key is not None else str(n_docs),
                exercise=ex.key,
                capability=ex.capability,
                params=doc.params,
                generator=world.generator,
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
    for p in world.probes():
        probes.write(
            make_probe(
                p.prompt, p.answer, exercise=ex.key, capability=ex.capability, meta=p.meta, choices=p.choices
            )
        )
        n_probes += 1
    counts = {"records": n_docs, "bytes": n_bytes, "probes": n_probes, "generator": world.generator}
    return {**counts, **world.summary()}


@contextmanager
def _llm_resources(design: Design, out: Path, console: Console) -> Iterator[tuple[Any, Any]]:
    """The endpoint pool and request cache of a design with `llm` exercises; both closed however the
    stage ends (engines started for `serve` endpoints are stopped, also on Ctrl-C)."""
    if design.llm is None or not any(ex.kind == "llm" for ex in design.exercises):
        yield None, None
        return
    from pretrainlab.llm.endpoints import EndpointPool
    from pretrainlab.llm.journal import RequestCache

    pool = EndpointPool(design, log_dir=out, announce=lambda m: console.print(f"[dim]{m}[/dim]"))
    cache = RequestCache(out.parent.parent / "llm-cache") if design.llm.cache else None
    try:
        yield pool, cache
    finally:
        pool.close()
        if cache is not None:
            cache.close()


def run_generate(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    per_exercise: dict[str, Any] = {}
    self_counting: set[int] = set()  # tasks whose world reports its own progress (through ctx.progress)
    with (
        _llm_resources(design, out, console) as (pool, cache),
        ParquetWriter(out / "probes.parquet", PROBE_SCHEMA) as probes,
        stage_progress(console, "generate", transient=True) as progress,
    ):
        for ex in design.exercises:
            task = progress.add(ex.key, unit="items" if ex.kind == "llm" else "docs")

            def report(done: int, total: int | None, info: str, t: int = task) -> None:
                self_counting.add(t)
                progress.update(t, done, total=total, info=info)

            def tick(n: int, t: int = task) -> None:
                """`n` more documents written, unless the world counts its own progress (an llm world counts
                items, and an item gives several documents or none)."""
                if t not in self_counting:
                    progress.advance(t, n)

            ctx = GenerateContext(design, ex.key, out, pool, cache, report)
            with ParquetWriter(records_path(out, ex.key), RECORD_SCHEMA) as records:
                per_exercise[ex.key] = generate_exercise(ex, design.seed, records, probes, tick, ctx)
            progress.finish(task)
            if "rejected" in per_exercise[ex.key]:
                _print_llm_summary(console, ex.key, per_exercise[ex.key])
                _check_failures(design, ex.key, per_exercise[ex.key])
    total_bytes = sum(v["bytes"] for v in per_exercise.values())
    return {
        "exercises": per_exercise,
        "records": sum(v["records"] for v in per_exercise.values()),
        "probes": sum(v["probes"] for v in per_exercise.values()),
        "bytes": total_bytes,
        # ~4 bytes per token for English-like text, before a tokenizer exists
        "token_estimate": total_bytes // 4,
        "ledger": {
            "tokens": total_bytes // 4,
            "note": "procedural worlds",
            **llm_ledger(design, per_exercise),
        },
    }


def _print_llm_summary(console: Console, key: str, s: dict[str, Any]) -> None:
    req = s["requests"]
    rej = ", ".join(f"{n} {r}" for r, n in s["rejected"].items()) or "none"
    console.print(
        f"  {key}: {s['records']} records from {s['items']} items · {req['sent']} requests sent, "
        f"{req['from_cache']} from the cache · rejected: {rej}"
    )


def _check_failures(design: Design, key: str, s: dict[str, Any]) -> None:
    """Fail the stage when too many items found no answer (engine down, wrong key or model name, an
    overloaded server): finishing would cache a stage that is missing data. Answers already received
    are journaled, so the re-run sends only the failed requests."""
    from pretrainlab.llm.journal import PERMANENT_REASONS
    from pretrainlab.pipeline import StageError

    failed = {
        r: n
        for r, n in s["rejected"].items()
        if r.startswith("request:") and r.split(":", 1)[1] not in PERMANENT_REASONS
    }
    allowed = design.llm.max_failed_fraction * s["items"]  # type: ignore[union-attr]
    if sum(failed.values()) > allowed:
        reasons = ", ".join(f"{n} {r.split(':', 1)[1]}" for r, n in failed.items())
        raise StageError(
            f"exercise '{key}': {sum(failed.values())} of {s['items']} items got no answer from the "
            f"engine ({reasons}; details in {s['rejected_file']}), more than llm.max_failed_fraction="
            f"{design.llm.max_failed_fraction:g} allows. Nothing is lost: every answer received is in "
            "the request cache, so running the same command again sends only the failed requests."
        )


def llm_ledger(design: Design, per_exercise: dict[str, Any]) -> dict[str, Any]:
    """Generation cost of `llm` exercises: tokens per exercise and endpoint; FLOPs (2 x params per token)
    and device-hours (tokens / tokens_per_s) where the design states the generator's size and speed."""
    if design.llm is None:
        return {}
    eps = {ep.name: ep for ep in design.llm.endpoints}
    rows: dict[str, Any] = {}
    for key, s in per_exercise.items():
        for ep_name, t in s.get("tokens", {}).items():
            n = t.get("prompt_tokens", 0) + t.get("completion_tokens", 0)
            ep = eps.get(ep_name)
            rows[f"{key}@{ep_name}"] = {
                **t,
                "flops": 2 * ep.params * n if ep is not None and ep.params else None,
                "device_hours": n / ep.tokens_per_s / 3600 if ep is not None and ep.tokens_per_s else None,
            }
    return {"llm": rows, "note": "procedural worlds + LLM generation (rows below)"} if rows else {}
