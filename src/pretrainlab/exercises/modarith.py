"""Modular arithmetic on random prefix expressions (Mano, Physics of Language Models)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from pretrainlab.config.exercises import ModArithParams
from pretrainlab.exercises import vocab
from pretrainlab.exercises.base import Document, Exercise, ProbeItem

OPERATORS = ("+", "-", "*")

# Attempts to find a probe expression that is neither in training nor already probed, before settling.
_PROBE_ATTEMPTS = 64


class ModArith(Exercise):
    """Random prefix expressions over + - * and their values modulo `modulus`.

    An expression with L operations is a random binary tree: the root takes an operator uniformly from
    + - *, its L-1 remaining operations split uniformly between left and right subtrees, and leaves are
    operands uniform in 0..modulus-1. A line is `<expression> = <value>` with the value reduced mod
    `modulus`; a document has `lines_per_doc` lines with L uniform in 1..`max_ops`. Probes ask for the
    value of fresh expressions for every L in 1..`probe_max_ops` (by default two more than training
    ever shows); an expression that also occurs in training is avoided while untried ones remain
    plausible, and `meta["in_training"]` says when it could not be.
    """

    kind = "modarith"
    version = 1

    Params = ModArithParams

    params: ModArithParams

    def __init__(self, params: ModArithParams | Mapping[str, Any] | None = None, seed: int = 0):
        super().__init__(vocab.coerce_params(self.Params, params), seed)
        self._training_expressions: set[str] | None = None

    def _expression(self, rng: random.Random, ops: int) -> tuple[list[str], int]:
        """Prefix tokens of a random expression with `ops` operations, and its value mod the modulus."""
        m = self.params.modulus
        if ops == 0:
            v = rng.randrange(m)
            return [str(v)], v
        op = rng.choice(OPERATORS)
        left_ops = rng.randrange(ops)
        left, a = self._expression(rng, left_ops)
        right, b = self._expression(rng, ops - 1 - left_ops)
        value = (a + b if op == "+" else a - b if op == "-" else a * b) % m
        return [op, *left, *right], value

    def _lines(self) -> Iterator[list[dict[str, Any]]]:
        p = self.params
        rng = vocab.derive_rng(self.seed, "modarith", "documents")
        for _ in range(p.documents):
            lines = []
            for _ in range(p.lines_per_doc):
                ops = rng.randint(1, p.max_ops)
                tokens, value = self._expression(rng, ops)
                lines.append({"expr": " ".join(tokens), "ops": ops, "value": value})
            yield lines

    def documents(self) -> Iterator[Document]:
        for lines in self._lines():
            text = "\n".join(f"{line['expr']} = {line['value']}" for line in lines)
            yield Document(text, {"part": "expr", "lines": lines})

    def training_expressions(self) -> set[str]:
        """Every expression text that occurs in the training documents."""
        if self._training_expressions is None:
            self._training_expressions = {line["expr"] for lines in self._lines() for line in lines}
        return self._training_expressions

    def probes(self) -> Iterator[ProbeItem]:
        p = self.params
        training = self.training_expressions()
        rng = vocab.derive_rng(self.seed, "modarith", "probes")
        used: set[str] = set()
        for ops in range(1, p.probe_ops + 1):
            for _ in range(p.probes_per_ops):
                # Prefer unseen and unprobed; then merely unprobed; then whatever came last.
                best: tuple[int, str, int] | None = None
                for _ in range(_PROBE_ATTEMPTS):
                    tokens, value = self._expression(rng, ops)
                    expr = " ".join(tokens)
                    rank = (expr in used) * 2 + (expr in training)
                    if best is None or rank < best[0]:
                        best = (rank, expr, value)
                    if rank == 0:
                        break
                assert best is not None
                _, expr, value = best
                used.add(expr)
                yield ProbeItem(
                    prompt=f"{expr} =",
                    answer=f" {value}",
                    meta={"split": "all", "group": f"ops={ops}", "ops": ops, "in_training": expr in training},
                )
