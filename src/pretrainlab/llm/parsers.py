"""Parse an LLM reply into record fields.

Specs are plain mappings (or just the kind name as a string)::

    {kind: plain}                                   # the reply, stripped
    {kind: regex, pattern: 'Answer:\\s*(?P<answer>-?\\d+)', group: answer, flags: [IGNORECASE], last: false}
    {kind: json, schema: {...JSON schema...}, name: qa_pair, strict: true}

``parse(spec, text)`` returns the parsed value (a string, or the decoded JSON) or raises
:class:`ParseError` whose ``reason`` is a short class (``empty``, ``no_match``, ``no_json``,
``schema``) and whose message says what failed. ``response_format(spec)`` gives the OpenAI
``response_format`` request payload for json specs (``None`` for the others), so a server with
structured output can enforce the same schema that is checked here.

The json parser validates with ``jsonschema`` when it is installed and otherwise falls back to a minimal
check of ``type``, ``required``, ``properties``, ``items``, ``enum`` and ``additionalProperties: false``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

try:  # optional: full JSON-schema validation
    import jsonschema as _jsonschema
except ImportError:  # pragma: no cover - depends on the environment
    _jsonschema = None

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


_FLAGS = {"IGNORECASE": re.IGNORECASE, "MULTILINE": re.MULTILINE, "DOTALL": re.DOTALL, "VERBOSE": re.VERBOSE}


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
        if self.schema is not None:
            _validate(value, self.schema, self._validator)
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


def _validate(value: Any, schema: Mapping[str, Any], validator: Any) -> None:
    if validator is not None:
        errors = sorted(
            validator.iter_errors(value), key=lambda e: (len(e.absolute_path), list(map(str, e.path)))
        )
        if errors:
            e = errors[0]
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ParseError("schema", f"field {_path(e.absolute_path)}: {e.message}{more}")
        return
    problem = _minimal_check(value, schema, [])
    if problem:
        where, msg = problem
        raise ParseError("schema", f"field {_path(where)}: {msg}")


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _minimal_check(value: Any, schema: Mapping[str, Any], where: list) -> tuple[list, str] | None:
    """Fallback when jsonschema is missing: type/required/properties/items/enum/additionalProperties."""
    t = schema.get("type")
    if t is not None:
        types = [t] if isinstance(t, str) else list(t)
        if not any(_TYPES.get(x, lambda v: True)(value) for x in types):
            return where, f"{json.dumps(value)[:40]} is not of type {' or '.join(map(repr, types))}"
    if "enum" in schema and value not in schema["enum"]:
        return where, f"{json.dumps(value)[:40]} is not one of {schema['enum']!r}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return where, f"{key!r} is a required property"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return where, f"additional properties are not allowed ({extra[0]!r} was unexpected)"
        for key, sub in props.items():
            if key in value and isinstance(sub, Mapping):
                problem = _minimal_check(value[key], sub, [*where, key])
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = _minimal_check(item, schema["items"], [*where, i])
            if problem:
                return problem
    return None


# ---------------------------------------------------------------- specs

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SPEC_FIELDS = {
    "plain": {"allow_empty"},
    "regex": {"pattern", "group", "flags", "last"},
    "json": {"schema", "name", "strict"},
}


def build_parser(spec: str | Mapping[str, Any] | Parser, path: str = "parser") -> Parser:
    """A parser from its spec; :class:`ParserSpecError` names the bad field under ``path``."""
    if isinstance(spec, Parser):
        return spec
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        raise ParserSpecError(f"{path}: expected a kind name or a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in _SPEC_FIELDS:
        raise ParserSpecError(f"{path}.kind: unknown parser kind {kind!r} (known: {', '.join(_SPEC_FIELDS)})")
    extra = sorted(set(spec) - _SPEC_FIELDS[kind] - {"kind"})
    if extra:
        allowed = ", ".join(sorted(_SPEC_FIELDS[kind]))
        raise ParserSpecError(f"{path}.{extra[0]}: unknown field for kind {kind!r} (allowed: {allowed})")

    if kind == "plain":
        return PlainParser(bool(spec.get("allow_empty", False)))
    if kind == "regex":
        flags = 0
        for f in spec.get("flags", []):
            if f not in _FLAGS:
                raise ParserSpecError(f"{path}.flags: unknown flag {f!r} (known: {', '.join(_FLAGS)})")
            flags |= _FLAGS[f]
        try:
            pattern = re.compile(spec.get("pattern", ""), flags)
        except (re.error, TypeError) as e:
            raise ParserSpecError(f"{path}.pattern: invalid regular expression: {e}") from None
        if not pattern.pattern:
            raise ParserSpecError(f"{path}.pattern: missing")
        group = spec.get("group")
        if group is None:
            names = list(pattern.groupindex)
            group = names[0] if len(names) == 1 else (1 if pattern.groups else 0)
        elif isinstance(group, str) and group not in pattern.groupindex:
            raise ParserSpecError(f"{path}.group: the pattern has no group named {group!r}")
        elif isinstance(group, int) and not 0 <= group <= pattern.groups:
            raise ParserSpecError(f"{path}.group: the pattern has {pattern.groups} group(s), not {group}")
        return RegexParser(pattern, group, bool(spec.get("last", False)))
    # json
    schema = spec.get("schema")
    validator = None
    if schema is not None:
        if not isinstance(schema, Mapping):
            raise ParserSpecError(f"{path}.schema: expected a mapping, got {type(schema).__name__}")
        if _jsonschema is not None:
            cls = _jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except _jsonschema.SchemaError as e:
                raise ParserSpecError(f"{path}.schema: invalid JSON schema: {e.message}") from None
            validator = cls(schema)
    name = spec.get("name", "response")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ParserSpecError(f"{path}.name: must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return JsonParser(schema, name, bool(spec.get("strict", False)), validator)


def parse(spec: str | Mapping[str, Any] | Parser, text: str) -> Any:
    """Parse ``text`` with the parser described by ``spec`` (see the module docstring)."""
    return build_parser(spec).parse(text)


def response_format(spec: str | Mapping[str, Any] | Parser) -> dict[str, Any] | None:
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
