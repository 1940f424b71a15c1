"""Parsers: how an `llm` step's reply becomes its output, one variant per `kind` (or just the kind name).

    parser: plain                                           # the reply, stripped
    parser: {kind: regex, pattern: 'Answer:\\s*(?P<answer>-?\\d+)', flags: [IGNORECASE], last: false}
    parser: {kind: json, schema: {...JSON schema...}, name: qa_pair, strict: true}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from pretrainlab.config.base import FieldError, Section

REGEX_FLAGS = {
    "IGNORECASE": re.IGNORECASE,
    "MULTILINE": re.MULTILINE,
    "DOTALL": re.DOTALL,
    "VERBOSE": re.VERBOSE,
}


class PlainParser(Section):
    """The reply, stripped of surrounding whitespace."""

    kind: Literal["plain"] = "plain"
    allow_empty: bool = Field(False, description="Accept an empty reply (else it is rejected as `empty`).")


class RegexParser(Section):
    """A group of the first (or last) match of a regular expression."""

    kind: Literal["regex"]
    pattern: str = Field(min_length=1, description="A Python regular expression.")
    group: str | int | None = Field(
        None, description="Group to take; default: the one named group, else group 1, else the match."
    )
    flags: list[Literal["IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE"]] = Field(
        default_factory=list, description="Regular-expression flags."
    )
    last: bool = Field(False, description="Take the last match instead of the first.")

    def compiled(self) -> re.Pattern:
        flags = 0
        for f in self.flags:
            flags |= REGEX_FLAGS[f]
        return re.compile(self.pattern, flags)

    @model_validator(mode="after")
    def _pattern(self) -> RegexParser:
        try:
            pattern = self.compiled()
        except re.error as e:
            raise FieldError("pattern", f"invalid regular expression: {e}") from None
        group = self.group
        if isinstance(group, str) and group not in pattern.groupindex:
            raise FieldError("group", f"the pattern has no group named {group!r}")
        if isinstance(group, int) and not 0 <= group <= pattern.groups:
            raise FieldError("group", f"the pattern has {pattern.groups} group(s), not {group}")
        return self


class JsonParser(Section):
    """The first JSON object (or array) in the reply, checked against a JSON Schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["json"]
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="A JSON Schema the value must satisfy (needs `jsonschema`)."
    )
    name: str = Field(
        "response", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Schema name sent with `structured`."
    )
    strict: bool = Field(False, description="Ask the engine for strict schema adherence.")


def _kind_name(value: Any) -> Any:
    """`parser: json` is `parser: {kind: json}`."""
    return {"kind": value} if isinstance(value, str) else value


ParserConfig = Annotated[
    PlainParser | RegexParser | JsonParser,
    Field(discriminator="kind"),
    BeforeValidator(_kind_name),
]
PARSER_VARIANTS = (PlainParser, RegexParser, JsonParser)
PARSER_KINDS = ("plain", "regex", "json")
