"""Running a design's stages: content-addressed folders, caching, and the order stages run in.

A stage's folder is ``runs/<design>/<stage>/<hash>/`` (see `runs`) where the hash covers the stage's own
config, the hash of the stage before it and the stage's code version (see `stages`). A stage is
finished when its manifest exists; it is written last, atomically. Re-running a finished stage does
nothing; a killed one starts again from scratch, or continues where it is `resumable`.

Under torchrun (see `train.distributed`) rank 0 runs the data stages while the other ranks wait at a
barrier, every rank runs the train stage, and rank 0 alone writes manifests and the design copy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pretrainlab import __version__
from pretrainlab.config import Design
from pretrainlab.ledger import measure
from pretrainlab.records import content_id, dumps
from pretrainlab.runs import DESIGN_COPY, LATEST, MANIFEST, read_manifest, write_atomic, write_json_atomic
from pretrainlab.stages import STAGE_NAMES, STAGES, Stage, stage
from pretrainlab.train.distributed import context


@dataclass
class StageResult:
    stage: str
    hash: str
    dir: Path
    manifest: dict[str, Any]
    cached: bool


class Pipeline:
    """Runs the stages of one design under a runs root, re-using whatever is finished."""

    def __init__(self, design: Design, runs_root: Path | str = "runs", console: Console | None = None):
        self.design = design
        self.root = Path(runs_root) / design.name
        self.dist = context()
        # under torchrun only rank 0 speaks
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(quiet=True)
        self.results: dict[str, StageResult] = {}
        self._configs: dict[str, dict[str, Any]] = {}

    # -- hashes ------------------------------------------------------------------------------------
    def stage_config(self, name: str) -> dict[str, Any]:
        """What stage `name`'s hash covers (computed once: it may read input files)."""
        if name not in self._configs:
            self._configs[name] = stage(name).config(self.design)
        return self._configs[name]

    def stage_hash(self, name: str) -> str:
        idx = STAGE_NAMES.index(name)
        key = {
            "stage": name,
            "version": STAGES[idx].version,
            "config": self.stage_config(name),
            "input": self.stage_hash(STAGE_NAMES[idx - 1]) if idx else None,
        }
        return content_id(dumps(key))[:16]

    def stage_dir(self, name: str) -> Path:
        return self.root / name / self.stage_hash(name)

    # -- running -----------------------------------------------------------------------------------
    def run_stage(self, name: str) -> StageResult:
        """Run one stage (and, first, any unfinished stage it depends on)."""
        if name in self.results:
            return self.results[name]
        self._save_design()
        idx = STAGE_NAMES.index(name)
        inputs = [self.run_stage(s) for s in STAGE_NAMES[:idx]]
        h = self.stage_hash(name)
        out = self.root / name / h
        # rank 0 looks and decides, so all ranks take the same path
        manifest = self.dist.agree(read_manifest(out) if self.dist.is_main else None)
        if manifest is not None:
            self.console.print(f"[dim]{name:<9} cached    {out}[/dim]")
            self.results[name] = StageResult(name, h, out, manifest, cached=True)
            return self.results[name]
        st = STAGES[idx]
        if self.dist.is_main or st.distributed:
            manifest = self._execute(st, out, {r.stage: r for r in inputs})
        manifest = self.dist.agree(manifest)
        self.results[name] = StageResult(name, h, out, manifest, cached=False)
        return self.results[name]

    def _execute(self, st: Stage, out: Path, inputs: dict[str, StageResult]) -> dict[str, Any] | None:
        """Run a stage into `out`; return its manifest (written on rank 0 only, else None)."""
        if self.dist.is_main:
            if out.exists() and not st.resumable:
                shutil.rmtree(out)  # unfinished output of a killed run: start over
            out.mkdir(parents=True, exist_ok=True)
            (out / MANIFEST).unlink(missing_ok=True)
        if st.distributed:
            self.dist.barrier()  # the other ranks wait for the folder
        self.console.print(f"[bold]{st.name:<9}[/bold] running   {out}")
        with measure() as usage:
            produced = st.run(self.design, out, inputs, self.console)
        if not self.dist.is_main:
            return None
        ledger = {**produced.pop("ledger", {}), **usage.as_dict()}
        manifest = {
            "stage": st.name,
            "hash": out.name,
            "version": st.version,
            "pretrainlab": __version__,
            "config": self.stage_config(st.name),
            "inputs": {s: r.hash for s, r in inputs.items()},
            **produced,
            "ledger": ledger,
        }
        write_json_atomic(out / MANIFEST, manifest)
        write_atomic(self.root / st.name / LATEST, out.name + "\n")
        self.console.print(
            f"[green]{st.name:<9} done[/green]      {usage.wall_s:.1f}s wall, {usage.cpu_s:.1f}s CPU"
        )
        return manifest

    def _save_design(self) -> None:
        """Keep the validated design beside its runs, so `pretrainlab report runs/NAME` can find it."""
        if not self.dist.is_main:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / DESIGN_COPY
        text = yaml.safe_dump(self.design.dump(), sort_keys=False)
        if not path.exists() or path.read_text() != text:
            write_atomic(path, text)

    def run(self, until: str = "train") -> dict[str, StageResult]:
        self.run_stage(until)
        return self.results

    def finished(self) -> dict[str, dict[str, Any]]:
        """Manifests of this design's finished stages, in stage order."""
        out = {}
        for name in STAGE_NAMES:
            m = read_manifest(self.stage_dir(name))
            if m is not None:
                out[name] = m
        return out
