"""Parsing an LLM reply into a step's output.

The design declares a parser (`pretrainlab.config.parsers`: plain, regex or json); :func:`build_parser`
makes it a runtime parser whose ``parse(text)`` returns the value (a string, or the decoded JSON) or raises
:class:`ParseError`, whose ``reason`` is a short class (``empty``, ``no_match``, ``no_json``, ``schema``)
and whose message says what failed. ``response_format(spec)`` gives the OpenAI ``response_format``
payload for json parsers (``None`` for the others), so a server with structured output can enforce the
same schema that is checked here. JSON Schemas are checked with ``jsonschema`` (part of the ``llm``
extra, as is everything the ``llm`` kind needs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import TypeAdapter, ValidationError

from pretrainlab.config.design import format_errors
from pretrainlab.config.parsers import JsonParser as JsonParserConfig
from pretrainlab.config.parsers import ParserConfig
from pretrainlab.config.parsers import PlainParser as PlainParserConfig
from pretrainlab.config.parsers import RegexParser as RegexParserConfig

__all__ = [
    "JsonParser",
    "ParseError",
    "Parser",
    "ParserSpecError",
    "PlainParser",
    "RegexParser",
    "build_parser",
    "extract_json",
    "parse",
    "response_format",
]


class ParseError(ValueError):
    """The reply did not parse. ``reason`` is a short class for stats; the message explains."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class ParserSpecError(ValueError):
    """The parser spec itself is invalid (bad regex, bad schema, unknown kind, ...)."""


class Parser:
    kind: str

    def parse(self, text: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class PlainParser(Parser):
    allow_empty: bool = False
    kind = "plain"

    def parse(self, text: str) -> str:
        out = (text or "").strip()
        if not out and not self.allow_empty:
            raise ParseError("empty", "the reply is empty")
        return out


@dataclass(frozen=True)
class RegexParser(Parser):
    pattern: re.Pattern
    group: str | int
    last: bool = False
    kind = "regex"

    def parse(self, text: str) -> str:
        text = text or ""
        if self.last:
            m = None
            for m in self.pattern.finditer(text):  # noqa: B007 - keep the last match
                pass
        else:
            m = self.pattern.search(text)
        if m is None:
            return self._fail(text)
        value = m.group(self.group)
        if value is None:
            raise ParseError(
                "no_match", f"group {self.group!r} of /{self.pattern.pattern}/ did not participate"
            )
        return value.strip()

    def _fail(self, text: str) -> str:
        snippet = text.strip().replace("\n", " ")
        snippet = snippet[:60] + ("..." if len(snippet) > 60 else "")
        raise ParseError("no_match", f"/{self.pattern.pattern}/ not found in reply {snippet!r}")


@dataclass(frozen=True)
class JsonParser(Parser):
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool = False
    _validator: Any = field(default=None, compare=False, repr=False)
    kind = "json"

    def parse(self, text: str) -> Any:
        want_array = isinstance(self.schema, Mapping) and self.schema.get("type") == "array"
        value = extract_json(text or "", arrays=want_array)
        if self._validator is not None:
            _validate(value, self._validator)
        return value


_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_json(text: str, *, arrays: bool = False) -> Any:
    """The first JSON object in ``text`` (also an array when ``arrays``): a fenced block (```json ...```)
    first, then the first ``{`` in the text where a complete JSON value starts."""
    decoder = json.JSONDecoder()
    starts = "{[" if arrays else "{"
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    first_error = None
    for chunk in candidates:
        for i, ch in enumerate(chunk):
            if ch not in starts:
                continue
            try:
                value, _ = decoder.raw_decode(chunk, i)
            except json.JSONDecodeError as e:
                first_error = first_error or e
                continue
            return value
    what = "object or array" if arrays else "object"
    if first_error is not None:
        raise ParseError(
            "no_json", f"no complete JSON {what} in the reply (first attempt: {first_error.msg})"
        )
    raise ParseError("no_json", f"no JSON {what} in the reply")


# ---------------------------------------------------------------- schema validation


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


def _validate(value: Any, validator: Any) -> None:
    errors = sorted(
        validator.iter_errors(value), key=lambda e: (len(e.absolute_path), list(map(str, e.path)))
    )
    if errors:
        e = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ParseError("schema", f"field {_path(e.absolute_path)}: {e.message}{more}")


# ---------------------------------------------------------------- specs

_ADAPTER: TypeAdapter = TypeAdapter(ParserConfig)


def build_parser(spec: str | Mapping[str, Any] | ParserConfig | Parser, path: str = "parser") -> Parser:
    """The runtime parser of a parser config (or of a kind name or mapping as in a design file, validated
    here); :class:`ParserSpecError` names the bad field under ``path``."""
    if isinstance(spec, Parser):
        return spec
    if not isinstance(spec, (PlainParserConfig, RegexParserConfig, JsonParserConfig)):
        try:
            spec = _ADAPTER.validate_python(spec)
        except ValidationError as e:
            raise ParserSpecError(format_errors(e, path)[0]) from None
    if isinstance(spec, PlainParserConfig):
        return PlainParser(spec.allow_empty)
    if isinstance(spec, RegexParserConfig):
        pattern = spec.compiled()
        group = spec.group
        if group is None:
            names = list(pattern.groupindex)
            group = names[0] if len(names) == 1 else (1 if pattern.groups else 0)
        return RegexParser(pattern, group, spec.last)
    validator = None
    if spec.json_schema is not None:
        cls = jsonschema.validators.validator_for(spec.json_schema)
        try:
            cls.check_schema(spec.json_schema)
        except jsonschema.SchemaError as e:
            raise ParserSpecError(f"{path}.schema: invalid JSON schema: {e.message}") from None
        validator = cls(spec.json_schema)
    return JsonParser(spec.json_schema, spec.name, spec.strict, validator)


def parse(spec: str | Mapping[str, Any] | ParserConfig | Parser, text: str) -> Any:
    """Parse ``text`` with the parser described by ``spec`` (see the module docstring)."""
    return build_parser(spec).parse(text)


def response_format(spec: str | Mapping[str, Any] | ParserConfig | Parser) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` for a json spec: ``json_schema`` with a schema, else ``json_object``;
    ``None`` for plain and regex specs (no constraint on the reply)."""
    parser = build_parser(spec)
    if not isinstance(parser, JsonParser):
        return None
    if parser.schema is None:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": parser.name, "schema": dict(parser.schema), "strict": parser.strict},
    }
