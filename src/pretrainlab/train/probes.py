"""Capability probes scored teacher-forced: one batched forward pass per batch, no token-by-token decoding.

This is the in-loop eval of training (`ProbeEval` calls it every `eval.every` steps); it lives with
training, and `sample_probes` picks the probes it scores, so that the harness (`pretrainlab.evaluate`)
can score the very same ones afterwards.

A probe's answer begins with a space and, in training text, is followed by "\\n" or the end of the
document (EOS). Greedy decoding that stops at EOS or a newline token produces exactly the answer iff
the argmax at every answer position is the gold token and the argmax after the last answer token is a
terminator: that is what `exact_match` computes, from the same forward pass that gives the answer's
log-likelihood. (Greedy output spelled with other tokens than the answer's own encoding counts as a
miss; with left-truncated prompts the pass sees a fixed window where generation would slide one.)
"""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

METRICS = ("exact_match", "answer_logprob", "choice_acc")


@dataclass
class _Continuation:
    """One scored sequence: a prompt followed by the gold answer or by one of the choices."""

    probe: int
    choice: int | None  # index into the probe's choices; None for the gold answer
    ids: list[int]
    start: int  # position of the first continuation token in ids


def terminator_ids(tokenizer: Tokenizer, eos_id: int = 0) -> list[int]:
    """Ids that end a greedy answer: EOS and every token whose text starts with a newline."""
    vocab = range(tokenizer.get_vocab_size())
    texts = tokenizer.decode_batch([[i] for i in vocab], skip_special_tokens=False)
    return sorted({eos_id, *(i for i, text in zip(vocab, texts, strict=True) if text.startswith("\n"))})


def probe_meta(probe: dict[str, Any]) -> dict[str, Any]:
    """A probe's meta (split, group, ...): a JSON string as probes.parquet stores it, or a dict."""
    meta = probe.get("meta") or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def sample_probes(probes: list[dict[str, Any]], per_group: int, seed: int) -> list[dict[str, Any]]:
    """At most `per_group` probes per (capability, split, group), a seeded sample in a stable order.

    Seeded by the design's seed, so the harness re-draws exactly the probes training scored.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for p in probes:
        meta = probe_meta(p)
        groups.setdefault((p["capability"], meta.get("split", "all"), str(meta.get("group"))), []).append(p)
    rng = np.random.default_rng(seed)
    out = []
    for key in sorted(groups):
        items = groups[key]
        if len(items) > per_group:
            items = [items[i] for i in np.sort(rng.choice(len(items), size=per_group, replace=False))]
        out.extend(items)
    return out


class ProbeSet:
    """Probes encoded once, sorted by length, ready to score any model that returns (logits, loss)."""

    def __init__(self, probes: list[dict], tokenizer: Tokenizer, max_len: int, eos_id: int = 0) -> None:
        self.probes = probes
        self.tokenizer = tokenizer
        self.terminators = torch.tensor(terminator_ids(tokenizer, eos_id))
        self._stop = set(self.terminators.tolist())
        items: list[_Continuation] = []
        for p, probe in enumerate(probes):
            choices = probe.get("choices") or []
            if choices and probe["answer"] not in choices:
                raise ValueError(f"probe {probe['id']}: answer {probe['answer']!r} is not among its choices")
            prompt = tokenizer.encode(probe["prompt"]).ids
            if not prompt:
                raise ValueError(f"probe {probe['id']}: prompt encodes to no tokens")
            for c, text in [(None, probe["answer"]), *enumerate(choices)]:
                if text == probe["answer"] and c is not None:
                    continue  # the gold choice reuses the gold-answer sequence
                cont = tokenizer.encode(text).ids
                if not cont or len(cont) >= max_len:
                    raise ValueError(
                        f"probe {probe['id']}: continuation {text!r} has {len(cont)} tokens, "
                        f"expected 1 to {max_len - 1} (max_len={max_len})"
                    )
                kept = prompt[-(max_len - len(cont)) :]  # truncate the prompt from the left
                items.append(_Continuation(p, c, kept + cont, len(kept)))
        items.sort(key=lambda item: len(item.ids))
        self.items = items
        # One right-padded tensor, sorted by length: a batch is a row slice cut to its longest row.
        # Targets hold the next token at positions that predict a continuation token, else -100.
        n, width = len(items), len(items[-1].ids) if items else 0
        self.ids = torch.full((n, width), eos_id, dtype=torch.long)
        self.targets = torch.full((n, width), -100, dtype=torch.long)
        self.lengths = torch.tensor([len(item.ids) for item in items], dtype=torch.long)
        for row, item in enumerate(items):
            seq = torch.tensor(item.ids)
            self.ids[row, : len(seq)] = seq
            self.targets[row, item.start - 1 : len(seq) - 1] = seq[item.start :]

    def __len__(self) -> int:
        return len(self.probes)

    @torch.no_grad()
    def _score_items(
        self,
        model: nn.Module,
        batch_size: int,
        device: str | torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> tuple[Tensor, Tensor, list[list[int]]]:
        """Per continuation: total log-likelihood, exact match (0/1), argmax tokens at its positions."""
        n = len(self.items)
        logprob, exact = torch.zeros(n), torch.zeros(n)
        argmax: list[list[int]] = []
        device = torch.device(device)
        amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        was_training = model.training
        model.eval()
        try:
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                T = int(self.lengths[hi - 1])
                ids, targets = self.ids[lo:hi, :T].to(device), self.targets[lo:hi, :T].to(device)
                with amp:
                    logits = model(ids)[0]
                mask = targets != -100
                rows = torch.nonzero(mask)[:, 0].cpu()
                picked = logits[mask].float()  # (answer tokens in batch, V), in row-major order
                gold = targets[mask]
                token_lp = (picked.log_softmax(-1).gather(-1, gold[:, None])[:, 0]).cpu()
                best = picked.argmax(-1).cpu()
                logprob[lo:hi] = torch.zeros(hi - lo).index_add_(0, rows, token_lp)
                misses = torch.zeros(hi - lo).index_add_(0, rows, (best != gold.cpu()).float())
                last = self.lengths[lo:hi].to(device) - 1
                after = logits[torch.arange(hi - lo, device=device), last].argmax(-1).cpu()
                stops = torch.isin(after, self.terminators)
                exact[lo:hi] = ((misses == 0) & stops).float()
                argmax.extend(t.tolist() for t in best.split(mask.sum(1).cpu().tolist()))
        finally:
            model.train(was_training)
        return logprob, exact, argmax

    def per_probe(
        self,
        model: nn.Module,
        batch_size: int = 128,
        device: str | torch.device = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ) -> list[dict[str, Any]]:
        """Per probe: id, capability, split, group, exact_match, answer_logprob, choice_acc, prediction.

        `prediction` is the part of greedy decoding's output that teacher forcing determines (see
        `_greedy_prefix`): all of it when exact_match is 1.
        `choice_acc` is None for probes without choices.
        """
        logprob, exact, argmax = self._score_items(model, batch_size, device, autocast_dtype)
        gold: dict[int, int] = {}
        choice_scores: dict[int, dict[str, float]] = defaultdict(dict)
        for k, item in enumerate(self.items):
            probe = self.probes[item.probe]
            if item.choice is None:
                gold[item.probe] = k
                if probe.get("choices"):
                    choice_scores[item.probe][probe["answer"]] = float(logprob[k])
            else:
                choice_scores[item.probe][probe["choices"][item.choice]] = float(logprob[k])
        rows = []
        for p, probe in enumerate(self.probes):
            k, meta = gold[p], probe_meta(probe)
            item = self.items[k]
            answer = item.ids[item.start :]
            scores = choice_scores.get(p)
            rows.append(
                {
                    "id": probe["id"],
                    "capability": probe["capability"],
                    "split": meta.get("split"),
                    "group": meta.get("group"),
                    "exact_match": float(exact[k]),
                    "answer_logprob": float(logprob[k]) / len(answer),
                    "choice_acc": _choice_correct(scores, probe["answer"]) if scores else None,
                    "prediction": self.tokenizer.decode(_greedy_prefix(argmax[k], answer, self._stop)),
                }
            )
        return rows

    def score(
        self,
        model: nn.Module,
        batch_size: int = 128,
        device: str | torch.device = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ) -> list[dict[str, Any]]:
        """Metric rows per (capability, split) and per (capability, split, group); see `aggregate`."""
        return aggregate(self.per_probe(model, batch_size, device, autocast_dtype))


def _greedy_prefix(argmax: list[int], answer: list[int], stop: set[int]) -> list[int]:
    """Argmax tokens up to the first that differs from the answer (kept) or is a terminator (dropped)."""
    written = []
    for guess, gold in zip(argmax, answer, strict=True):
        if guess in stop:
            break
        written.append(guess)
        if guess != gold:
            break
    return written


def _choice_correct(scores: dict[str, float], answer: str) -> float:
    """1.0 iff the gold answer is strictly more likely than every other choice."""
    return float(all(scores[answer] > v for choice, v in scores.items() if choice != answer))


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of each metric per (capability, split, group=None) and per group where probes have one.

    Each output row is {capability, split, group, metric, value, n}; a metric a probe lacks (choice_acc
    without choices) is left out of that mean, and a metric no probe has gives no row.
    """
    buckets: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        groups = [None] if row["group"] is None else [None, row["group"]]
        for group in groups:
            for metric in METRICS:
                if row[metric] is not None:
                    buckets[(row["capability"], row["split"], group, metric)].append(row[metric])
    return [
        {"capability": c, "split": s, "group": g, "metric": m, "value": sum(v) / len(v), "n": len(v)}
        for (c, s, g, m), v in buckets.items()
    ]


def greedy_answer(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    eos_id: int = 0,
    max_len: int | None = None,
) -> str:
    """Real token-by-token greedy continuation of prompt, stopped before EOS or a newline token.

    The context is cut to its last `max_len` tokens (default: the model's `config.seq_len`).
    """
    window = max_len or model.config.seq_len
    stop = set(terminator_ids(tokenizer, eos_id))
    ids = tokenizer.encode(prompt).ids
    new: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                nxt = int(model(torch.tensor([(ids + new)[-window:]]))[0][0, -1].argmax())
                if nxt in stop:
                    break
                new.append(nxt)
    finally:
        model.train(was_training)
    return tokenizer.decode(new)
