"""The train stage: build the model from the design, train it on the mixture shards phase by
phase, and score every capability's probes from step 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from rich.console import Console

from pretrainlab.config import Design
from pretrainlab.config.model import model_config, train_config
from pretrainlab.errors import DesignError
from pretrainlab.runs import GENERATIONS, METRICS, PROBES, TOKENIZER, write_atomic
from pretrainlab.tokenize.loader import TokenLoader
from pretrainlab.tokenize.stage import mixture_name
from pretrainlab.tokenize.tokenizer import EOS, load_tokenizer
from pretrainlab.train.callbacks import Checkpointer, MetricsLogger, ProbeEval, ProgressBar, read_metrics
from pretrainlab.train.distributed import context
from pretrainlab.train.model import GPT
from pretrainlab.train.peak import matmul_rate
from pretrainlab.train.probes import ProbeSet, greedy_answer, sample_probes
from pretrainlab.train.trainer import Phase, Trainer


def final_scores(metrics_path: Path) -> list[dict[str, Any]]:
    """The last probe scores of each (capability, split, metric), overall (not per group)."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in read_metrics(metrics_path):
        if row.get("kind") == "probe" and row.get("group") is None:
            last[(row["capability"], row["split"], row["metric"])] = row
    return [
        {"capability": c, "split": s, "metric": m, "value": r["value"], "n": r["n"], "step": r["step"]}
        for (c, s, m), r in sorted(last.items())
    ]


def sample_generations(model: GPT, tok, probes: list[dict[str, Any]], per_capability: int) -> list[dict]:
    """Greedy answers of the final model to a few probes of each capability and split."""
    picked: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in probes:
        key = (p["capability"], json.loads(p["meta"]).get("split", "all"))
        if len(picked.setdefault(key, [])) < per_capability:
            picked[key].append(p)
    rows = []
    for (capability, split), items in sorted(picked.items()):
        for p in items:
            n_answer = len(tok.encode(p["answer"]).ids)
            pred = greedy_answer(
                model, tok, p["prompt"], max_new_tokens=n_answer + 4, eos_id=tok.token_to_id(EOS)
            )
            rows.append(
                {
                    "capability": capability,
                    "split": split,
                    "prompt": p["prompt"][-300:],
                    "answer": p["answer"],
                    "prediction": pred,
                    "correct": pred.strip() == p["answer"].strip(),
                }
            )
    return rows


def per_rank_batch(batch: int, world_size: int) -> int:
    """Each rank's share of the design's batch, which the world size must divide."""
    if batch % world_size:
        raise DesignError(
            [
                f"train.batch: {batch} does not split evenly over {world_size} processes; "
                f"use a multiple of {world_size}"
            ]
        )
    return batch // world_size


def stage_config(design: Design) -> dict[str, Any]:
    """What the train stage's hash covers: editing it re-uses the data stages' output."""
    d = design.dump()
    return {"seed": d["seed"], "model": d["model"], "train": d["train"], "eval": d["eval"]}


def run_stage(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    """Train (on every rank under torchrun); the returned manifest fields are rank 0's."""
    dist = context()
    tok_stage = inputs["tokenize"]
    tok = load_tokenizer(tok_stage.dir / TOKENIZER)
    t = design.train
    config = model_config(design, tok_stage.manifest["vocab_size"])
    torch.manual_seed(design.seed)
    model = GPT(config)
    console.print(
        f"  model: {model.num_params(non_embedding=False):,} parameters "
        f"({model.num_params():,} non-embedding), preset {design.model.preset}"
        + (f", {dist.world_size} processes ({dist.backend})" if dist.enabled else "")
    )
    batch = per_rank_batch(t.batch, dist.world_size)
    phases = []
    for i, phase in enumerate(t.phases):
        shards = [tok_stage.dir / s for s in tok_stage.manifest["mixtures"][mixture_name(phase)]["shards"]]
        loader = TokenLoader(
            shards, t.seq_len, batch, seed=design.seed + i, rank=dist.rank, world_size=dist.world_size
        )
        phases.append(
            Phase(name=phase.name, steps=phase.steps, batches=loader.batch, lr_scale=phase.lr_scale)
        )

    callbacks: list = []
    if dist.is_main:  # metrics, probe scores and checkpoints are rank 0's
        probes = pq.read_table(inputs["generate"].dir / PROBES).to_pylist()
        probes = sample_probes(probes, design.eval.max_probes, design.seed)
        logger = MetricsLogger(out / METRICS)
        callbacks = [
            logger,
            ProbeEval(
                ProbeSet(probes, tok, max_len=t.seq_len),
                design.eval.every,
                logger,
                batch_size=design.eval.batch_size,
            ),
            Checkpointer(t.checkpoint_every),
            ProgressBar(console),
        ]
    trainer = Trainer(model, train_config(design), phases, out, callbacks, dist=dist)
    if dist.is_main and trainer.tuning is not None:
        console.print(f"  {trainer.tuning.summary()}", soft_wrap=True)  # one line, however long
    rate = None
    if dist.is_main:  # one probe, not one per rank competing for the same cores
        rate, cached = matmul_rate(trainer.device, trainer.autocast_dtype or torch.float32)
        console.print(
            f"  device: {rate.device}, {rate.dtype} matmul {rate.flops_per_s / 1e9:,.1f} GFLOP/s "
            f"({'measured earlier on this machine' if cached else 'measured now'})"
        )
    trainer.fit()
    if trainer.resumed_step is not None:
        console.print(f"  resumed from the checkpoint at step {trainer.resumed_step}")
    if rate is None:  # not rank 0
        return {}
    scores = final_scores(out / METRICS)
    generations = sample_generations(model, tok, probes, design.eval.samples)
    write_atomic(out / GENERATIONS, json.dumps(generations, indent=2) + "\n")
    timing = dict(trainer.timing)
    total = sum(timing.values()) or 1.0
    return {
        "model": {
            "params": model.num_params(non_embedding=False),
            "non_embedding_params": model.num_params(),
            "config": config.__dict__,
        },
        "steps": trainer.global_step,
        "precision": "bf16" if trainer.autocast_dtype == torch.bfloat16 else "fp32",
        "compile": trainer.compiled,
        "compile_s": trainer.compile_s,  # the first compiled update, compile included (in timing.train_s)
        "compile_note": trainer.compile_note,  # why compile was asked for and not used
        "autotune": trainer.tuning.as_dict() if trainer.tuning is not None else None,
        "device": str(trainer.device),
        "world_size": dist.world_size,
        "tokens_seen": trainer.tokens_seen,
        "final_scores": scores,
        "timing": timing,
        "eval_share": round(timing.get("eval_s", 0.0) / total, 4),
        "matmul_rate": rate.as_dict(),
        "mfu": round(trainer.flops_seen / max(timing["train_s"], 1e-9) / rate.flops_per_s, 4),
        "ledger": {
            "tokens": trainer.tokens_seen,
            "flops": trainer.flops_seen,
            "device_hours": trainer.flops_seen / rate.flops_per_s / 3600,
            "note": f"device-hours at the measured {rate.dtype} matmul rate, "
            f"{rate.flops_per_s / 1e9:,.1f} GFLOP/s"
            + (
                f"; train_s includes the first compiled update, {trainer.compile_s:.0f} s, compile included"
                if trainer.compile_s
                else ""
            )
            + (
                f"; not counted: the autotune probe, {trainer.tuning.probe_s:.0f} s"
                if trainer.tuning is not None and trainer.tuning.probe_s
                else ""
            ),
        },
    }
