"""The stage graph: content-addressed run directories, caching, and the order stages run in.

A stage's directory is ``runs/<design>/<stage>/<hash>/`` where the hash covers the stage's own
config, the hashes of its inputs and the stage's code version. A stage is finished when its
``manifest.json`` exists; it is written last, atomically.

Under torchrun (see `train.distributed`) rank 0 runs the data stages while the other ranks wait at a
barrier, every rank runs the train stage, and rank 0 alone writes manifests and the design copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pretrainlab import __version__
from pretrainlab.design import Design
from pretrainlab.generate.records import content_id, dumps
from pretrainlab.ledger import measure
from pretrainlab.train.distributed import context

# Bump a stage's version when its output for the same config changes.
STAGE_VERSIONS = {"generate": 1, "curate": 1, "tokenize": 1, "train": 1}
STAGES = ("generate", "curate", "tokenize", "train")
MANIFEST = "manifest.json"


class StageError(RuntimeError):
    """A stage that cannot finish for a reason the user can act on; the message says what to do.
    Nothing is marked finished, so the next run runs the stage again."""


@dataclass
class StageResult:
    stage: str
    hash: str
    dir: Path
    manifest: dict[str, Any]
    cached: bool


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


class Pipeline:
    """Runs the stages of one design under a runs root, re-using whatever is finished."""

    def __init__(self, design: Design, runs_root: Path | str = "runs", console: Console | None = None):
        self.design = design
        self.root = Path(runs_root) / design.name
        self.dist = context()
        # under torchrun only rank 0 speaks
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(quiet=True)
        self.results: dict[str, StageResult] = {}

    # -- stage configs: what each stage's hash covers ------------------------------------
    def stage_config(self, stage: str) -> dict[str, Any]:
        d = self.design.dump()
        if stage == "generate":
            # a world's version is part of the key: new world code means new data
            versions = {ex.key: ex.world_class().version for ex in self.design.exercises}
            config = {"seed": d["seed"], "exercises": d["exercises"], "world_versions": versions}
            return {**config, **self._llm_inputs}
        if stage == "curate":
            return d["curate"]
        if stage == "tokenize":
            from pretrainlab.tokenize.stage import mixtures_config

            return {"seed": d["seed"], "tokenizer": d["tokenizer"], "mixtures": mixtures_config(self.design)}
        if stage == "train":
            return {"seed": d["seed"], "model": d["model"], "train": d["train"], "eval": d["eval"]}
        raise KeyError(stage)

    @cached_property
    def _llm_inputs(self) -> dict[str, Any]:
        """What else LLM exercises' output depends on: the seed corpora's bytes (not where they lie)
        and the models the endpoints serve (not their URLs or keys). Hashed once per pipeline: every
        stage's hash includes the generate stage's."""
        out: dict[str, Any] = {}
        if self.design.corpora:
            from pretrainlab.design import DesignError
            from pretrainlab.llm.corpus import CorpusError, corpus_digest

            corpora = {}
            for name, spec in self.design.corpora.items():
                try:
                    digest = corpus_digest(spec, self.design.base_dir)
                except CorpusError as e:
                    raise DesignError([f"corpora.{name}.path: {e}"]) from None
                corpora[name] = {**spec.model_dump(mode="json", exclude={"path"}), "digest": digest}
            out["corpora"] = corpora
        if self.design.llm is not None:
            out["models"] = {ep.name: self.design.endpoint_model(ep) for ep in self.design.llm.endpoints}
        return out

    def stage_hash(self, stage: str) -> str:
        idx = STAGES.index(stage)
        parent = self.stage_hash(STAGES[idx - 1]) if idx else None
        key = {
            "stage": stage,
            "version": STAGE_VERSIONS[stage],
            "config": self.stage_config(stage),
            "input": parent,
        }
        return content_id(dumps(key))[:16]

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage / self.stage_hash(stage)

    # -- running -------------------------------------------------------------------------
    def run_stage(self, stage: str) -> StageResult:
        """Run one stage (and, first, any unfinished stage it depends on)."""
        if stage in self.results:
            return self.results[stage]
        self._save_design()
        idx = STAGES.index(stage)
        inputs = [self.run_stage(s) for s in STAGES[:idx]]
        h = self.stage_hash(stage)
        out = self.root / stage / h
        # rank 0 looks and decides, so all ranks take the same path
        manifest = self.dist.agree(read_manifest(out) if self.dist.is_main else None)
        if manifest is not None:
            self.console.print(f"[dim]{stage:<9} cached    {out}[/dim]")
            result = StageResult(stage, h, out, manifest, cached=True)
            self.results[stage] = result
            return result
        body = _stage_body(stage)
        inputs_by_stage = {r.stage: r for r in inputs}
        if self.dist.is_main or body.distributed:
            manifest = self._execute(stage, body, out, inputs_by_stage)
        manifest = self.dist.agree(manifest)
        result = StageResult(stage, h, out, manifest, cached=False)
        self.results[stage] = result
        return result

    def _execute(
        self, stage: str, body: StageBody, out: Path, inputs: dict[str, StageResult]
    ) -> dict[str, Any] | None:
        """Run a stage's body into `out`; return its manifest (written on rank 0 only, else None)."""
        h = out.name
        if self.dist.is_main:
            if out.exists() and not body.resumable:
                shutil.rmtree(out)  # unfinished output of a killed run: start over
            out.mkdir(parents=True, exist_ok=True)
            (out / MANIFEST).unlink(missing_ok=True)
        if body.distributed:
            self.dist.barrier()  # the other ranks wait for the folder
        self.console.print(f"[bold]{stage:<9}[/bold] running   {out}")
        with measure() as usage:
            produced = body.run(self.design, out, inputs, self.console)
        if not self.dist.is_main:
            return None
        ledger = {**produced.pop("ledger", {}), **usage.as_dict()}
        manifest = {
            "stage": stage,
            "hash": h,
            "version": STAGE_VERSIONS[stage],
            "pretrainlab": __version__,
            "config": self.stage_config(stage),
            "inputs": {s: r.hash for s, r in inputs.items()},
            **produced,
            "ledger": ledger,
        }
        write_json_atomic(out / MANIFEST, manifest)
        (self.root / stage / "latest").write_text(h + "\n")
        self.console.print(
            f"[green]{stage:<9} done[/green]      {usage.wall_s:.1f}s wall, {usage.cpu_s:.1f}s CPU"
        )
        return manifest

    def _save_design(self) -> None:
        """Keep the validated design beside its runs, so `pretrainlab report runs/NAME` can find it."""
        if not self.dist.is_main:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "design.yaml"
        text = yaml.safe_dump(self.design.dump(), sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)

    def run(self, until: str = "train") -> dict[str, StageResult]:
        self.run_stage(until)
        return self.results

    def finished(self) -> dict[str, dict[str, Any]]:
        """Manifests of this design's finished stages."""
        out = {}
        for stage in STAGES:
            m = read_manifest(self.stage_dir(stage))
            if m is not None:
                out[stage] = m
        return out


@dataclass
class StageBody:
    run: Callable[..., dict[str, Any]]
    resumable: bool = False  # a killed run's output is kept and continued, not wiped
    distributed: bool = False  # every rank runs it under torchrun (else rank 0 alone)


def _stage_body(stage: str) -> StageBody:
    if stage == "generate":
        from pretrainlab.generate.stage import run_generate

        return StageBody(run_generate)
    if stage == "curate":
        from pretrainlab.curate.stage import run_curate

        return StageBody(run_curate)
    if stage == "tokenize":
        from pretrainlab.tokenize.stage import run_tokenize

        return StageBody(run_tokenize)
    if stage == "train":
        from pretrainlab.train.stage import run_train

        return StageBody(run_train, resumable=True, distributed=True)
    raise KeyError(stage)
