"""Samplers: the random values an `llm` exercise mixes into its prompts, one variant per `kind`.

    samplers:
      audience: {kind: categorical, values: [child, expert], weights: [3, 1]}
      n_items:  {kind: int, low: 2, high: 5}                        # inclusive
      temp:     {kind: float, low: 0.0, high: 1.0, round: 2}
      topics:   {kind: choice_list, values: [a, b, c, d], k: 2}     # k distinct values, a list
      seed_words: {kind: words, vocabulary: [...], k: 3}            # k words joined by `sep`
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, model_validator

from pretrainlab.config.base import FieldError, Section

Number = Annotated[float, Field(allow_inf_nan=False)]


class CategoricalSampler(Section):
    """One of `values`, uniformly or by `weights`."""

    kind: Literal["categorical"]
    values: list[Any] = Field(min_length=1, description="The values to choose from.")
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, description="Relative weights, one per value; default: uniform."
    )

    @model_validator(mode="after")
    def _weights(self) -> CategoricalSampler:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise FieldError("weights", f"{len(self.weights)} weights for {len(self.values)} values")
            if sum(self.weights) <= 0:
                raise FieldError("weights", "weights sum to 0")
        return self


class IntSampler(Section):
    """An integer uniform in `low`..`high`, both included."""

    kind: Literal["int"]
    low: StrictInt = Field(description="Smallest value.")
    high: StrictInt = Field(description="Largest value (included).")

    @model_validator(mode="after")
    def _order(self) -> IntSampler:
        if self.low > self.high:
            raise FieldError("low", f"low ({self.low}) is greater than high ({self.high})")
        return self


class FloatSampler(Section):
    """A float uniform in [`low`, `high`], optionally rounded."""

    kind: Literal["float"]
    low: Number = Field(description="Lower bound.")
    high: Number = Field(description="Upper bound.")
    round: int | None = Field(None, ge=0, strict=True, description="Decimals to round to; default: none.")

    @model_validator(mode="after")
    def _order(self) -> FloatSampler:
        if self.low > self.high:
            raise FieldError("low", f"low ({self.low:g}) is greater than high ({self.high:g})")
        return self


class ChoiceListSampler(Section):
    """A list of `k` distinct values drawn from `values`."""

    kind: Literal["choice_list"]
    values: list[Any] = Field(min_length=1, description="Distinct values to draw from.")
    k: StrictInt = Field(ge=1, description="How many to draw.")

    @model_validator(mode="after")
    def _k(self) -> ChoiceListSampler:
        if len(set(map(repr, self.values))) != len(self.values):
            raise FieldError("values", "values must be distinct")
        if self.k > len(self.values):
            raise FieldError("k", f"k={self.k} but only {len(self.values)} values")
        return self


class WordsSampler(Section):
    """`k` words from `vocabulary`, joined by `sep`."""

    kind: Literal["words"]
    vocabulary: list[str] = Field(min_length=1, description="The words to draw from.")
    k: StrictInt = Field(ge=1, description="How many words.")
    distinct: bool = Field(False, description="No word twice in one draw.")
    sep: str = Field(" ", description="Joins the words.")

    @model_validator(mode="after")
    def _k(self) -> WordsSampler:
        if self.distinct and self.k > len(set(self.vocabulary)):
            raise FieldError(
                "k", f"k={self.k} distinct words but only {len(set(self.vocabulary))} in the vocabulary"
            )
        return self


SamplerConfig = Annotated[
    CategoricalSampler | IntSampler | FloatSampler | ChoiceListSampler | WordsSampler,
    Field(discriminator="kind"),
]
SAMPLER_VARIANTS = (CategoricalSampler, IntSampler, FloatSampler, ChoiceListSampler, WordsSampler)
SAMPLER_KINDS = ("categorical", "int", "float", "choice_list", "words")


def check_sampler_names(samplers: dict[str, Any]) -> dict[str, Any]:
    """Sampler names become template variables, so they must be identifiers."""
    for name in samplers:
        if not name.isidentifier():
            raise FieldError(name, "sampler names must be identifiers (they become template variables)")
    return samplers


__all__ = [
    "SAMPLER_KINDS",
    "SAMPLER_VARIANTS",
    "CategoricalSampler",
    "ChoiceListSampler",
    "FloatSampler",
    "IntSampler",
    "SamplerConfig",
    "WordsSampler",
    "check_sampler_names",
]
