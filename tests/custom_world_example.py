"""A user-defined exercise kind living outside pretrainlab, named in a design as
`tests.custom_world_example:Echo`."""

from __future__ import annotations

import random
from collections.abc import Iterator

from pydantic import Field

from pretrainlab.exercises.base import Document, Exercise, ExerciseParams, ProbeItem

WORDS = ["amber", "basil", "cobalt", "dune", "ember", "fjord", "gale", "heron"]


class Echo(Exercise):
    """Lines `say <word> -> <word>`: the model learns to copy a word."""

    kind = "echo"

    class Params(ExerciseParams):
        documents: int = Field(10, ge=1, description="Number of training documents.")
        probes: int = Field(4, ge=1, description="Number of probes.")

    params: Params

    def documents(self) -> Iterator[Document]:
        rng = random.Random(f"echo/{self.seed}/documents")
        for _ in range(self.params.documents):
            word = rng.choice(WORDS)
            yield Document(f"say {word} -> {word}", {"part": "echo", "word": word})

    def probes(self) -> Iterator[ProbeItem]:
        rng = random.Random(f"echo/{self.seed}/probes")
        for _ in range(self.params.probes):
            word = rng.choice(WORDS)
            yield ProbeItem(f"say {word} ->", f" {word}", {"split": "all", "group": "copy"})


NOT_A_WORLD = object()
