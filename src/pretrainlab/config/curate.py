"""Per-exercise quality filters for the curate stage: which rules run, and their thresholds.

Every rule is off unless its section is given; ``filters: default`` turns every one on with the
defaults below. The rules themselves live in `pretrainlab.curate.filters`; this module only says what a
design may ask for, so that a bad threshold is an error when the design is loaded, not mid-run.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, GetJsonSchemaHandler, field_validator, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from pretrainlab.config.base import FieldError, Section

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
MAX_NGRAM = 50

# Phrases an assistant uses about itself: meta-talk wherever it appears. Bare "as an ai" and "as a
# language model" are not here, because "she worked as an AI researcher" and "it serves as a language
# model" are ordinary prose; they are start-only phrases below, and here only followed by a comma.
REFUSALS_ANYWHERE: tuple[str, ...] = (
    "as an ai language model",
    "as an ai assistant",
    "as an ai,",
    "as a language model,",
    "as a large language model,",
    "i am an ai language model",
    "i'm an ai language model",
    "as of my last knowledge update",
    "my knowledge cutoff",
)
# Lead-ins of a refusal or of a reply about the task ("Sure, here is the rewritten text:"): only at the
# very start, since "I cannot" or "here is the" inside a story or an essay is ordinary prose.
REFUSALS_START: tuple[str, ...] = (
    "as an ai",
    "as a language model",
    "as a large language model",
    "i cannot",
    "i can not",
    "i can't help",
    "i can't assist",
    "i can't provide",
    "i can't fulfill",
    "i'm unable to",
    "i am unable to",
    "i'm sorry, but",
    "i am sorry, but",
    "i apologize, but",
    "sorry, but i",
    "sure, here",
    "sure! here",
    "certainly! here",
    "certainly, here",
    "of course! here",
    "here is the rewritten",
    "here's the rewritten",
    "here is a rewritten",
    "here's a rewritten",
    "here is the revised",
    "here's the revised",
    "here is a revised",
    "here's a revised",
)


def normalize_phrase(text: str) -> str:
    """The form phrases are compared in: lower case, typographic apostrophes made plain (models write
    both "I can't" and "I can’t")."""
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


class LengthFilter(Section):
    """Bounds on a text's size, in whitespace-separated words and in characters; a bound left null is
    not checked. The default drops only empty (or whitespace-only) texts."""

    min_words: int | None = Field(1, ge=0, description="Fewest words a kept text has (null: no bound).")
    max_words: int | None = Field(None, ge=1, description="Most words a kept text has (null: no bound).")
    min_chars: int | None = Field(None, ge=0, description="Fewest characters a kept text has.")
    max_chars: int | None = Field(None, ge=1, description="Most characters a kept text has.")

    @model_validator(mode="after")
    def _order(self) -> LengthFilter:
        for unit in ("words", "chars"):
            lo, hi = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
            if lo is not None and hi is not None and lo > hi:
                raise FieldError(f"min_{unit}", f"min_{unit} ({lo}) is greater than max_{unit} ({hi})")
        return self


class RepetitionFilter(Section):
    """The repetition rules of Gopher (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
    Insights from Training Gopher", table A1), with its thresholds as defaults (they are also the
    defaults of datatrove's GopherRepetitionFilter). A text is dropped when a share exceeds its
    threshold (strictly); null turns one rule off, and an n left out of a mapping is not checked.

    Lines are the non-empty lines of the text, paragraphs its blocks between blank lines; a duplicate is
    any occurrence after the first. N-grams are over whitespace-separated words, and character shares
    count the characters of words (not spaces) over all words' characters. The top n-gram share is that
    of the most frequent n-gram, counted only when it occurs more than once (so a short text is not
    dropped for being short). The duplicated n-gram share counts each word once however many
    duplicated n-grams cover it, first occurrences included, as the paper defines it.
    """

    dup_line_frac: Fraction | None = Field(0.3, description="Most lines that repeat an earlier line.")
    dup_para_frac: Fraction | None = Field(
        0.3, description="Most paragraphs that repeat an earlier paragraph."
    )
    dup_line_char_frac: Fraction | None = Field(
        0.2, description="Most characters in lines that repeat an earlier line."
    )
    dup_para_char_frac: Fraction | None = Field(
        0.2, description="Most characters in paragraphs that repeat an earlier paragraph."
    )
    top_ngram_char_frac: dict[int, Fraction] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n -> most characters in the most frequent word n-gram (counted when it repeats).",
    )
    dup_ngram_char_frac: dict[int, Fraction] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> most characters covered by word n-grams that occur more than once.",
    )

    @field_validator("top_ngram_char_frac", "dup_ngram_char_frac")
    @classmethod
    def _sizes(cls, shares: dict[int, float]) -> dict[int, float]:
        bad = sorted(n for n in shares if not 1 <= n <= MAX_NGRAM)
        if bad:
            raise ValueError(f"n-gram sizes must be 1..{MAX_NGRAM}, not {', '.join(map(str, bad))}")
        return dict(sorted(shares.items()))


class LoopFilter(Section):
    """Degenerate loops, the way a model's output goes wrong when it stops making sense: the text ends in
    one unit over and over. Two rules: the last words are one n-gram of 1..`max_ngram` words repeated
    at least `min_repeats` times to the end (a trailing part of the unit, where generation was cut off,
    counts); or the last `tail_fraction` of the characters is one unit of at most `max_unit_chars`
    characters repeated (at least `min_repeats` times), which catches loops without spaces
    ("hahaha…", "!!!!!…", "=-=-=-…"). A loop anywhere else is left to the repetition rules."""

    max_ngram: int = Field(8, ge=1, le=64, description="Longest repeated word n-gram looked for.")
    min_repeats: int = Field(4, ge=2, description="Fewest repeats of the unit that make a loop.")
    tail_fraction: Fraction | None = Field(
        0.3,
        gt=0,
        description="Share of the text, from its end, that one short unit filling it makes a loop "
        "(null: only the word rule).",
    )
    max_unit_chars: int = Field(32, ge=1, le=256, description="Longest character unit of the tail rule.")
    min_tail_chars: int = Field(
        20,
        ge=1,
        description="The tail rule applies only to tails at least this long, so that a short text "
        "ending in '000' or '!!!' is not a loop.",
    )


class RefusalFilter(Section):
    """Refusals and meta-talk an LLM leaves in its output ("As an AI language model…", "Sure, here is
    the rewritten text:"). Matching ignores case and apostrophe style, and respects word boundaries
    ("as an ai," does not match inside "as an aide,"). Two lists: phrases matched anywhere (an
    assistant talking about itself) and phrases matched only at the start of the text, after leading
    whitespace, quotes and markdown marks (lead-ins, which are ordinary prose elsewhere). The defaults
    are `REFUSALS_ANYWHERE` and `REFUSALS_START` in this module."""

    extra: list[str] = Field(default_factory=list, description="More phrases, matched anywhere.")
    extra_start: list[str] = Field(
        default_factory=list, description="More phrases, matched only at the start of the text."
    )
    replace_defaults: bool = Field(
        False, description="Use only `extra` and `extra_start`, not the built-in phrases."
    )

    @field_validator("extra", "extra_start")
    @classmethod
    def _phrases(cls, phrases: list[str]) -> list[str]:
        out = []
        for i, phrase in enumerate(phrases):
            norm = " ".join(normalize_phrase(phrase).split())
            if not norm:
                raise ValueError(f"phrase [{i}] is empty")
            out.append(norm)
        return out

    @model_validator(mode="after")
    def _something(self) -> RefusalFilter:
        if self.replace_defaults and not (self.extra or self.extra_start):
            raise FieldError("replace_defaults", "replaces the built-in phrases with none: give `extra`")
        return self

    def anywhere(self) -> tuple[str, ...]:
        """Phrases matched anywhere, normalized."""
        return tuple(self.extra) + (() if self.replace_defaults else REFUSALS_ANYWHERE)

    def start(self) -> tuple[str, ...]:
        """Phrases matched at the start only, normalized."""
        return tuple(self.extra_start) + (() if self.replace_defaults else REFUSALS_START)


DEFAULT = "default"


class FiltersConfig(Section):
    """Quality filters for one exercise's records. Each rule is off while its section is absent (or
    null) and on with its defaults when given as ``{}``. ``filters: default`` is shorthand for every
    rule with its defaults::

        filters: default
        filters: {repetition: {}, loops: {max_ngram: 12}, length: {min_words: 50}}

    A removed record's reason names the rule first (``filter:length (12 words < 50)``), then why.
    """

    length: LengthFilter | None = Field(None, description="Bounds on words and characters.")
    repetition: RepetitionFilter | None = Field(None, description="Gopher's repetition rules.")
    loops: LoopFilter | None = Field(None, description="Texts that end in a degenerate loop.")
    refusals: RefusalFilter | None = Field(None, description="Refusals and assistant meta-talk.")
    verdicts: bool = Field(
        True,
        description="Drop records whose meta.verdicts has an entry with ok: false (a failed verifier "
        "or judge of an llm exercise).",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``default`` -> every rule on with its defaults; any other string is an error that says so."""
        if isinstance(data, str):
            if data.strip() == DEFAULT:
                return {"length": {}, "repetition": {}, "loops": {}, "refusals": {}, "verdicts": True}
            raise ValueError(f"expected a mapping of filters or {DEFAULT!r}")
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Editors should accept the shorthand too: the schema is the mapping or the word ``default``."""
        schema = handler.resolve_ref_schema(handler(core))
        return {"anyOf": [{"const": DEFAULT}, dict(schema)]}
