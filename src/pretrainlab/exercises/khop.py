"""k-hop lookups over a random cycle (Depo, Physics of Language Models 4.1)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from pretrainlab.config.exercises import KHopParams
from pretrainlab.exercises import vocab
from pretrainlab.exercises.base import Document, Exercise, ProbeItem


def chain_text(edges: list[list[str]], queries: list[list[Any]]) -> str:
    """Edges `edge x y` one per line, then queries `? k x z` one per line (z: x's k-th successor).

    Every symbol follows a space, wherever it stands, so a byte-level BPE gives it the same
    tokens in an edge and in a query (a line-initial symbol would be tokenized differently). The
    answer directly follows the start symbol, so a one-hop query has the shape of its edge, `x y`:
    the model can answer it by finding x among the edges and copying what follows (an induction
    head); with a separator in between (`? k x = z`, version 2) a 4-layer model stayed at chance."""
    lines = [f"edge {x} {y}" for x, y in edges]
    lines += [f"? {k} {x} {z}" for k, x, z in queries]
    return "\n".join(lines)


def successor(cycle: list[str], start: str, k: int) -> str:
    """The k-th successor of `start`; each symbol of `cycle` points to the next, the last to the first."""
    return cycle[(cycle.index(start) + k) % len(cycle)]


class KHop(Exercise):
    """Random cyclic permutations written as edges, with queries for the k-th successor of a symbol.

    Each document draws n symbols (n uniform in `symbols`), links them into one random cycle, writes
    all n edges `edge x y` (x points to y) one per line in random order, then `queries_per_doc` lines
    `? k x z` with k uniform in 1..`max_hops` and x uniform among the symbols: z is x's k-th
    successor. Probes are fresh documents from an independent stream, each with a single query whose
    answer is left out, for every k in 1..`probe_max_hops` (which may exceed `max_hops`).
    """

    kind = "khop"
    version = 3  # 2: edges written `edge x y`; 3: queries `? k x z` (was `? k x = z`)

    Params = KHopParams

    params: KHopParams

    def __init__(self, params: KHopParams | Mapping[str, Any] | None = None, seed: int = 0):
        super().__init__(vocab.coerce_params(self.Params, params), seed)

    def _cycle(self, rng: random.Random) -> tuple[list[str], list[list[str]]]:
        """A random cycle (symbols in successor order) and its edges in random order."""
        lo, hi = self.params.symbols
        pool = vocab.SYMBOLS[: self.params.pool] if self.params.pool else vocab.SYMBOLS
        cycle = rng.sample(pool, rng.randint(lo, hi))
        edges = [[x, cycle[(i + 1) % len(cycle)]] for i, x in enumerate(cycle)]
        rng.shuffle(edges)
        return cycle, edges

    def documents(self) -> Iterator[Document]:
        p = self.params
        rng = vocab.derive_rng(self.seed, "khop", "documents")
        for _ in range(p.documents):
            cycle, edges = self._cycle(rng)
            queries: list[list[Any]] = []
            for _ in range(p.queries_per_doc):
                k, x = rng.randint(1, p.max_hops), rng.choice(cycle)
                queries.append([k, x, successor(cycle, x, k)])
            yield Document(
                chain_text(edges, queries),
                {"part": "chain", "n": len(cycle), "cycle": cycle, "edges": edges, "queries": queries},
            )

    def probes(self) -> Iterator[ProbeItem]:
        p = self.params
        rng = vocab.derive_rng(self.seed, "khop", "probes")
        for k in range(1, p.probe_hops + 1):
            for _ in range(p.probes_per_hop):
                cycle, edges = self._cycle(rng)
                x = rng.choice(cycle)
                z = successor(cycle, x, k)
                text = chain_text(edges, [[k, x, z]])
                prompt = text.removesuffix(f" {z}")
                yield ProbeItem(
                    prompt=prompt,
                    answer=f" {z}",
                    meta={"split": "all", "group": f"k={k}", "k": k, "n": len(cycle), "start": x},
                )
