"""Prompt templates for LLM exercises, compiled in a Jinja2 sandbox.

A :class:`PromptTemplate` is either a chat template (a list of ``{role, content}`` messages whose contents
are templates) or a plain completion template (one string). Templates come from exercise designs, so they
are treated as untrusted: they are compiled with Jinja2's immutable sandbox, ``StrictUndefined`` and no
autoescaping, and any attribute or item whose name starts with ``_`` (``''.__class__``,
``x.__globals__``, ``cycler.__init__``, ``x['__dict__']``, ``x|attr('__class__')``) is rejected when the
template is compiled. What can only be seen at render time (an attribute name held in a variable, a
``str.format`` field like ``{0.__class__}``) is stopped by the sandbox and reported the same way.

All errors are :class:`TemplateError` subclasses naming the template (``<name>.messages[1]`` for a chat
message) and the offending expression or variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.exceptions import TemplateSyntaxError as _JinjaSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "CHAT_ROLES",
    "PromptTemplate",
    "TemplateError",
    "TemplateSecurityError",
    "TemplateSyntaxError",
    "TemplateUndefinedError",
]

CHAT_ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


class TemplateError(ValueError):
    """A prompt template failed to compile or render. ``template`` names it (``summarize.messages[1]``)."""

    def __init__(self, template: str, message: str):
        self.template = template
        super().__init__(f"template {template!r}: {message}")


class TemplateSyntaxError(TemplateError):
    """The template is not valid Jinja2 (or not a valid chat/completion template)."""


class TemplateSecurityError(TemplateError):
    """The template reaches for Python internals. ``expression`` is the offending expression."""

    def __init__(self, template: str, expression: str, reason: str):
        self.expression = expression
        super().__init__(template, f"unsafe expression {expression!r}: {reason}")


class TemplateUndefinedError(TemplateError):
    """The template used a variable (or attribute) the render context does not define."""

    def __init__(self, template: str, variable: str | None, known: Sequence[str], detail: str = ""):
        self.variable = variable  # None when an attribute/item of a defined variable is missing
        self.known = sorted(known)
        known_s = ", ".join(self.known) if self.known else "none"
        what = f"undefined variable {variable!r}" if variable is not None else f"undefined value: {detail}"
        super().__init__(template, f"{what} (known variables: {known_s})")


def _make_env() -> ImmutableSandboxedEnvironment:
    # ImmutableSandboxedEnvironment is a SandboxedEnvironment that also forbids mutating lists/dicts/sets
    # handed in through the context (``{{ doc.tags.append(1) }}``).
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


_ENV = _make_env()


def _expr(node: nodes.Node) -> str:
    """A short Jinja-like rendering of an expression node, for error messages."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Const):
        return repr(node.value)
    if isinstance(node, nodes.Getattr):
        return f"{_expr(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        return f"{_expr(node.node)}[{_expr(node.arg)}]"
    if isinstance(node, nodes.Call):
        return f"{_expr(node.node)}(...)"
    if isinstance(node, nodes.Tuple):
        return "(...)"
    if isinstance(node, nodes.List):
        return "[...]"
    if isinstance(node, nodes.Dict):
        return "{...}"
    if isinstance(node, nodes.Filter):
        args = ", ".join(_expr(a) for a in node.args)
        inner = _expr(node.node) if node.node is not None else ""
        return f"{inner}|{node.name}({args})"
    return "..."


def _check_ast(tree: nodes.Template, template: str) -> None:
    """Reject attribute/item access to names starting with ``_`` anywhere in the template."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            bad = node.attr.startswith("_")
        elif isinstance(node, nodes.Getitem):
            bad = isinstance(node.arg, nodes.Const) and str(node.arg.value).startswith("_")
        else:  # x|attr('__class__')
            bad = (
                node.name == "attr"
                and bool(node.args)
                and isinstance(node.args[0], nodes.Const)
                and str(node.args[0].value).startswith("_")
            )
        if bad:
            raise TemplateSecurityError(
                template, _expr(node), f"names starting with '_' are not allowed (line {node.lineno})"
            )


_UNDEF_RE = re.compile(r"^'(?P<name>[^']+)' is undefined$")


class _Compiled:
    __slots__ = ("name", "source", "template", "variables")

    def __init__(self, env: ImmutableSandboxedEnvironment, source: str, name: str):
        if not isinstance(source, str):
            raise TemplateSyntaxError(name, f"expected a template string, got {type(source).__name__}")
        try:
            tree = env.parse(source, name=name)
        except _JinjaSyntaxError as e:
            raise TemplateSyntaxError(name, f"line {e.lineno}: {e.message}") from None
        _check_ast(tree, name)
        from jinja2 import meta

        self.name = name
        self.source = source
        self.variables = frozenset(meta.find_undeclared_variables(tree))
        self.template = env.from_string(tree)

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            return self.template.render(context)
        except SecurityError as e:
            raise TemplateSecurityError(
                self.name, _security_expr(str(e)), f"blocked by the sandbox: {e}"
            ) from None
        except UndefinedError as e:
            msg = str(e)
            m = _UNDEF_RE.match(msg)
            raise TemplateUndefinedError(
                self.name, m.group("name") if m else None, list(context), msg
            ) from None
        except (JinjaError, OverflowError, ArithmeticError) as e:
            raise TemplateError(self.name, f"render failed: {type(e).__name__}: {e}") from None


def _security_expr(msg: str) -> str:
    # e.g. "access to attribute '__class__' of 'str' object is unsafe."
    m = re.search(r"attribute '([^']+)' of '([^']+)'", msg)
    return f"<{m.group(2)}>.{m.group(1)}" if m else msg


class PromptTemplate:
    """A chat or completion prompt template.

    ``PromptTemplate("Summarize: {{ doc }}")`` is a completion template; ``render`` returns a string.
    ``PromptTemplate([{"role": "system", "content": "..."}, {"role": "user", "content": "{{ doc }}"}])``
    is a chat template; ``render`` returns a list of ``{"role", "content"}`` dicts ready for
    :class:`pretrainlab.engines.client.Request`.
    """

    def __init__(self, source: str | Sequence[Mapping[str, Any]], *, name: str = "prompt"):
        self.name = name
        if isinstance(source, str):
            self.kind = "completion"
            self._parts: list[tuple[str | None, _Compiled]] = [(None, _Compiled(_ENV, source, name))]
        elif isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
            self.kind = "chat"
            if not source:
                raise TemplateSyntaxError(name, "a chat template needs at least one message")
            self._parts = []
            for i, msg in enumerate(source):
                where = f"{name}.messages[{i}]"
                if not isinstance(msg, Mapping):
                    raise TemplateSyntaxError(where, f"expected a {{role, content}} mapping, got {msg!r}")
                extra = set(msg) - {"role", "content"}
                if extra:
                    raise TemplateSyntaxError(
                        where, f"unknown field(s) {sorted(extra)} (allowed: role, content)"
                    )
                role = msg.get("role")
                if role not in CHAT_ROLES:
                    raise TemplateSyntaxError(where, f"role {role!r} is not one of {sorted(CHAT_ROLES)}")
                if "content" not in msg:
                    raise TemplateSyntaxError(where, "missing 'content'")
                self._parts.append((role, _Compiled(_ENV, msg["content"], where)))
        else:
            raise TemplateSyntaxError(
                name, f"expected a string or a list of messages, got {type(source).__name__}"
            )

    @classmethod
    def from_spec(cls, spec: str | Sequence[Mapping[str, Any]] | Mapping[str, Any], *, name: str = "prompt"):
        """From a design entry: a string, a list of messages, ``{messages: [...]}`` or ``{prompt: "..."}``."""
        if isinstance(spec, Mapping):
            keys = set(spec) & {"messages", "prompt"}
            if len(keys) != 1 or set(spec) - {"messages", "prompt"}:
                raise TemplateSyntaxError(
                    name, f"expected exactly one of 'messages' or 'prompt', got {sorted(spec)}"
                )
            return cls(spec[keys.pop()], name=name)
        return cls(spec, name=name)

    @property
    def variables(self) -> frozenset[str]:
        """Top-level names the template reads from its context (Jinja globals like ``range`` excluded)."""
        out: set[str] = set()
        for _, c in self._parts:
            out |= c.variables
        return frozenset(out - set(_ENV.globals))

    def render(self, context: Mapping[str, Any]) -> list[dict[str, str]] | str:
        if self.kind == "completion":
            return self._parts[0][1].render(context)
        return [{"role": role, "content": c.render(context)} for role, c in self._parts]

    def __repr__(self) -> str:
        return f"PromptTemplate(name={self.name!r}, kind={self.kind!r}, variables={sorted(self.variables)})"
