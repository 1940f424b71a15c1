"""The run directory: every file name, stage folder and manifest of a run, and one atomic write.

    runs/<design>/design.yaml                      the validated design of the latest run
    runs/<design>/report.html                      the latest report
    runs/<design>/llm-cache/                       answers of LLM engines (outlives stage hashes)
    runs/<design>/<stage>/latest                   the hash of the stage's last finished run
    runs/<design>/<stage>/<hash>/manifest.json     written last: the stage is finished when it exists

A stage folder holds the files named below. Other modules take names from here, never spell them, and
write files that must appear whole through `atomic_path`/`write_atomic` (one fsynced rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
DESIGN_COPY = "design.yaml"
REPORT = "report.html"
LLM_CACHE = "llm-cache"
LATEST = "latest"

PROBES = "probes.parquet"  # generate
STATS = "stats.json"  # curate
TOKENIZER = "tokenizer.json"  # tokenize
METRICS = "metrics.jsonl"  # train
GENERATIONS = "generations.json"  # train
CHECKPOINTS = "checkpoints"  # train


def records_path(stage_dir: Path, exercise: str) -> Path:
    """An exercise's generated records."""
    return stage_dir / f"records-{exercise}.parquet"


def rejected_path(stage_dir: Path, exercise: str) -> Path:
    """What an exercise's generation rejected, one JSON line per rejection with its reason."""
    return stage_dir / f"rejected-{exercise}.jsonl"


def kept_path(stage_dir: Path, exercise: str) -> Path:
    """An exercise's records that curation kept."""
    return stage_dir / f"kept-{exercise}.parquet"


def removed_path(stage_dir: Path, exercise: str) -> Path:
    """An exercise's records that curation removed, each with its reason."""
    return stage_dir / f"removed-{exercise}.parquet"


def run_root(stage_dir: Path) -> Path:
    """`runs/<design>` of a stage folder `runs/<design>/<stage>/<hash>`."""
    return Path(stage_dir).parent.parent


def sibling_stage(stage_dir: Path, stage: str, hash_: str) -> Path:
    """The folder of another stage of the same run, given its hash (a manifest's `inputs`)."""
    return run_root(stage_dir) / stage / hash_


def latest_stage_dir(root: Path, stage: str) -> Path | None:
    """The last finished folder of `stage` under a run root, if any."""
    marker = Path(root) / stage / LATEST
    return Path(root) / stage / marker.read_text().strip() if marker.is_file() else None


def temporary_path(path: Path) -> Path:
    """Where `path` is written before `commit` renames it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit(tmp: Path, path: Path) -> None:
    """Make a fully written temporary file `path`: fsync it, rename it over, fsync the folder, so that
    readers see the old file or the new one, never a part, and the new one survives a power cut."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; committed when the block ends without error,
    removed when it raises."""
    tmp = temporary_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, path)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` atomically and durably (see `commit`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON, written atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """A finished stage's manifest, or None while the stage is unfinished."""
    path = Path(stage_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None
