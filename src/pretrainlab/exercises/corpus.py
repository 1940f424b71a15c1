"""The `corpus` exercise kind: natural text in the mix, a seed corpus passed through as training text.

Each document of the corpus (each chunk, where the corpus is chunked) becomes one record, `repeat` times
or in `sample` draws as `seeds:` says, with its source id and license. It is curated like every other
exercise, and its share and phases are set like any exercise's: this is how a design mixes natural and
designed data, and how an experiment gets a natural-data baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pretrainlab.config.exercises import CorpusExercise
from pretrainlab.corpora import corpus_digest, seed_plan
from pretrainlab.errors import CorpusError, DesignError
from pretrainlab.exercises.base import Document, Exercise, GenerateContext, ProbeItem
from pretrainlab.exercises.vocab import derive_rng

if TYPE_CHECKING:
    from pretrainlab.config import Design


class Corpus(Exercise):
    """Documents of a seed corpus, as they are."""

    kind = "corpus"
    version = 1
    Params = CorpusExercise
    params: CorpusExercise

    def __init__(self, params: CorpusExercise, seed: int = 0):
        super().__init__(params, seed)
        self.design: Design | None = None

    @property
    def generator(self) -> str:
        return f"corpus:{self.params.seeds.corpus}@{self.version}"

    @classmethod
    def hash_inputs(cls, params: CorpusExercise, design: Design) -> dict[str, Any]:
        """The corpus's bytes, not where it lies."""
        name = params.seeds.corpus
        spec = design.corpora[name]
        try:
            digest = corpus_digest(spec, design.base_dir)
        except CorpusError as e:
            raise DesignError([f"corpora.{name}.path: {e}"]) from None
        return {"corpora": {name: {**spec.model_dump(mode="json", exclude={"path"}), "digest": digest}}}

    def setup(self, ctx: GenerateContext) -> None:
        self.design = ctx.design

    def documents(self) -> Iterator[Document]:
        if self.design is None:
            raise RuntimeError("a corpus exercise runs inside the generate stage (call setup(ctx) first)")
        use = self.params.seeds
        spec = self.design.corpora[use.corpus]
        rng = derive_rng(self.seed, "seeds", use.corpus)
        for index, item in enumerate(seed_plan(use, spec, self.design.base_dir, rng)):
            yield Document(
                text=item.seed.text,
                key=str(index),
                params={
                    "part": "corpus",
                    "seed": {"corpus": use.corpus, "id": item.seed.id, "use": item.repeat},
                },
                source_id=item.seed.id,
                source_license=item.seed.license,
            )

    def probes(self) -> Iterator[ProbeItem]:
        return iter(())
