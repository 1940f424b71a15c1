"""The tokenize stage: train the tokenizer on training records, apply the token shares, pack shards.

One shard set ("mixture") is written per distinct record selection of the training phases: a
phase that names no exercises trains on the full mixture ``all``; a phase that names some
(``exercises: [bios/qa]``) gets its own mixture of just those records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from pretrainlab.config import Design
from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.config.sections import PhaseSection
from pretrainlab.records import read_rows
from pretrainlab.runs import TOKENIZER, kept_path
from pretrainlab.tokenize.mixture import plan_mixture
from pretrainlab.tokenize.shards import ShardWriter
from pretrainlab.tokenize.tokenizer import encode_batch, save_tokenizer, train_bpe

FULL_MIXTURE = "all"


def mixture_name(phase: PhaseSection) -> str:
    return FULL_MIXTURE if not phase.exercises else "+".join(s.replace("/", "-") for s in phase.exercises)


def _selected(ex: ExerciseConfig, selectors: list[str] | None) -> tuple[bool, set[str] | None]:
    """Whether a phase's selectors take this exercise, and which parts of it (None = all parts)."""
    if not selectors:
        return True, None
    parts: set[str] = set()
    for sel in selectors:
        head, _, part = sel.partition("/")
        if head in (ex.key, ex.capability):
            if not part:
                return True, None
            parts.add(part)
    return bool(parts), parts or None


def mixtures_config(design: Design) -> dict[str, Any]:
    """Each mixture: the exercises (and parts) it holds with their shares, and its token budget."""
    t = design.train
    tokens_per_step = t.batch * t.grad_accum * (t.seq_len + 1)
    out: dict[str, Any] = {}
    for phase in t.phases:
        name = mixture_name(phase)
        mix = out.setdefault(name, {"members": {}, "consumed": 0})
        mix["consumed"] += phase.steps * tokens_per_step
        for ex in design.exercises:
            take, parts = _selected(ex, phase.exercises)
            if take and ex.share > 0:
                mix["members"][ex.key] = {"share": ex.share, "parts": sorted(parts) if parts else None}
    for name, mix in out.items():
        budget = design.budget.train_tokens if name == FULL_MIXTURE else None
        mix["tokens"] = budget or mix.pop("consumed")
        mix.pop("consumed", None)
    return out


def _tokenizer_sample(texts: dict[str, list[str]], limit: int, seed: int) -> list[str]:
    """A seeded sample of at most `limit` training texts, in a fixed order."""
    everything = [t for key in sorted(texts) for t in texts[key]]
    if len(everything) <= limit:
        return everything
    idx = np.sort(np.random.default_rng(seed).choice(len(everything), size=limit, replace=False))
    return [everything[i] for i in idx]


def stage_config(design: Design) -> dict[str, Any]:
    """What the tokenize stage's hash covers: the tokenizer and the mixtures it packs."""
    return {
        "seed": design.seed,
        "tokenizer": design.tokenizer.model_dump(mode="json"),
        "mixtures": mixtures_config(design),
    }


def run_stage(design: Design, out: Path, inputs: dict, console: Console) -> dict[str, Any]:
    kept_dir = inputs["curate"].dir
    texts: dict[str, list[str]] = {}
    parts: dict[str, np.ndarray] = {}
    for ex in design.exercises:
        rows = list(read_rows(kept_path(kept_dir, ex.key), columns=["text", "params"]))
        texts[ex.key] = [r["text"] for r in rows]
        parts[ex.key] = np.array([json.loads(r["params"]).get("part", "") for r in rows], dtype=object)

    console.print(f"  training a {design.tokenizer.vocab}-token byte-level BPE")
    tok = train_bpe(
        _tokenizer_sample(texts, design.tokenizer.train_docs, design.seed), design.tokenizer.vocab
    )
    save_tokenizer(tok, out / TOKENIZER)
    vocab = tok.get_vocab_size()

    encoded = {key: encode_batch(tok, t) for key, t in texts.items()}
    total_tokens = sum(int(sum(len(d) + 1 for d in docs)) for docs in encoded.values())

    mixtures: dict[str, Any] = {}
    for name, mix in mixtures_config(design).items():
        members = sorted(mix["members"])
        lengths, doc_ids = {}, {}
        for key in members:
            wanted = mix["members"][key]["parts"]
            ids = (
                np.arange(len(encoded[key]))
                if wanted is None
                else np.flatnonzero(np.isin(parts[key], wanted))
            )
            doc_ids[key] = ids
            lengths[key] = np.array([len(encoded[key][i]) + 1 for i in ids], dtype=np.int64)
        shares = {key: mix["members"][key]["share"] for key in members}
        order = plan_mixture(lengths, shares, mix["tokens"], seed=design.seed)
        writer = ShardWriter(out / name, vocab_size=vocab, tokenizer_name=TOKENIZER)
        per_exercise = dict.fromkeys(members, 0)
        for ex_idx, doc_idx in order:
            key = members[ex_idx]
            doc = encoded[key][doc_ids[key][doc_idx]]
            writer.add(doc)
            per_exercise[key] += len(doc) + 1
        shards = writer.close()
        n = sum(per_exercise.values())
        mixtures[name] = {
            "shards": [str(p.relative_to(out)) for p in shards],
            "documents": len(order),
            "tokens": n,
            "tokens_per_exercise": per_exercise,
            "share_actual": {k: round(v / max(n, 1), 4) for k, v in per_exercise.items()},
        }
        console.print(f"  mixture {name}: {len(order):,} documents, {n:,} tokens")
    return {
        "vocab_size": vocab,
        "corpus_tokens": total_tokens,
        "tokens_per_exercise": {k: int(sum(len(d) + 1 for d in v)) for k, v in encoded.items()},
        "mixtures": mixtures,
        "ledger": {"tokens": total_tokens},
    }
