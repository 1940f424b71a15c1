"""Seed corpora (the design's `corpora:` section) and how an exercise uses one (`seeds:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrainlab.config.base import Section


class ChunkSpec(Section):
    tokens: int = Field(ge=16, description="At most this many tokens per chunk.")
    tokenizer: str | None = Field(
        None,
        description="A tokenizer.json to count tokens with (e.g. the generator's); default: words and "
        "punctuation marks count one token each.",
    )


class CorpusSpec(Section):
    path: str = Field(
        description="A .jsonl/.json-lines file, a .parquet file, or a folder of .txt/.md files."
    )
    format: Literal["auto", "jsonl", "parquet", "folder"] = Field("auto", description="Default: by the path.")
    text: str = Field("text", description="Field holding the text (jsonl/parquet).")
    id: str | None = Field(None, description="Field holding a stable id; default: a hash of the text.")
    url: str | None = Field(None, description="Field holding the source url.")
    license: str | None = Field(None, description="Field holding the license.")
    default_license: str | None = Field(None, description="License of seeds whose license field is empty.")
    chunk: ChunkSpec | None = Field(
        None, description="Cut long seeds into chunks of at most this many tokens."
    )


class SeedUse(Section):
    corpus: str = Field(description="Name of a corpus in the design's `corpora` section.")
    repeat: int | None = Field(None, ge=1, description="Use every chunk exactly this many times (default 1).")
    sample: int | None = Field(None, ge=1, description="Instead: this many draws with replacement.")
    weight: str | None = Field(None, description="With `sample`: a numeric field to weight draws by.")
    limit: int | None = Field(None, ge=1, description="Use only the first this many chunks.")

    @model_validator(mode="after")
    def _one_mode(self) -> SeedUse:
        if self.repeat is not None and self.sample is not None:
            raise ValueError("give `repeat` or `sample`, not both")
        if self.weight is not None and self.sample is None:
            raise ValueError("`weight` needs `sample`")
        return self
