"""Verify parsed LLM replies.

Two kinds:

* **programmatic**: a Python callable named ``package.module:function``, resolved with importlib and
  called as ``fn(fields)`` where ``fields`` is the record (sampled values + parsed reply). It returns a
  bool or ``(bool, reason)``. :func:`load_verifier` resolves the path (with clear errors) and
  :func:`run_verifier` normalises the result into a :class:`Verdict`. The shipped example
  ``pretrainlab.llm.verifiers:arithmetic_answer`` recomputes ``a op b``.
* **LLM judge**: :func:`judge_prompt` builds the chat messages asking a judge model for a 1-10 score;
  the caller sends them (e.g. with :class:`pretrainlab.engines.client.EngineClient`) and turns the reply into
  a verdict with :func:`parse_judge_score`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Verdict",
    "VerifierError",
    "arithmetic_answer",
    "judge_prompt",
    "load_verifier",
    "parse_judge_score",
    "run_verifier",
]


class VerifierError(ValueError):
    """A verifier could not be resolved, or returned something that is not a verdict."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None
    score: float | None = None  # judge verdicts only


_PATH_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_verifier(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """Resolve ``package.module:function`` (the part after ``:`` may be dotted, ``module:Class.method``)."""
    if not isinstance(path, str) or not _PATH_RE.match(path):
        raise VerifierError(f"verifier {path!r}: expected 'package.module:function'")
    module_name, _, attr_path = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise VerifierError(f"verifier {path!r}: no module named {e.name!r}") from None
        raise VerifierError(f"verifier {path!r}: importing {module_name!r} failed: {e}") from e
    except Exception as e:
        raise VerifierError(
            f"verifier {path!r}: importing {module_name!r} failed: {type(e).__name__}: {e}"
        ) from e
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise VerifierError(
                f"verifier {path!r}: {getattr(obj, '__name__', obj)!r} has no attribute {part!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise VerifierError(f"verifier {path!r}: {type(obj).__name__} object is not callable")
    return obj


def run_verifier(fn: Callable[[Mapping[str, Any]], Any] | str, fields: Mapping[str, Any]) -> Verdict:
    """Call a verifier (or the dotted path of one) on a record and normalise its answer.

    An exception raised by the verifier is a failed verdict (``reason`` says what was raised); a return
    value that is neither a bool nor ``(bool, reason)`` is a :class:`VerifierError` (a bug in the
    verifier, not a bad record).
    """
    if isinstance(fn, str):
        fn = load_verifier(fn)
    try:
        out = fn(fields)
    except Exception as e:
        return Verdict(False, f"verifier raised {type(e).__name__}: {e}")
    name = getattr(fn, "__qualname__", repr(fn))
    if isinstance(out, bool):
        return Verdict(out)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], bool):
        return Verdict(out[0], None if out[1] is None else str(out[1]))
    raise VerifierError(f"verifier {name} returned {out!r}; expected a bool or (bool, reason)")


# ---------------------------------------------------------------- the shipped example

_EXPR_RE = re.compile(r"^\s*(-?\d+)\s*([-+*×x])\s*(-?\d+)\s*=?\s*$")
_NUM_RE = re.compile(r"^[-+]?\d+(\.0+)?$")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{what} is a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    s = str(v).strip().rstrip(".").replace(",", "").replace("_", "")
    if _NUM_RE.match(s):
        return int(float(s)) if "." in s else int(s)
    raise ValueError(f"{what} {v!r} is not an integer")


def arithmetic_answer(fields: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Example verifier: recompute ``a op b`` (op in ``+ - *``) and compare it with the parsed answer.

    The operands come from ``fields["a"]``, ``fields["op"]``, ``fields["b"]`` (sampled values) or from
    ``fields["expression"]`` (``"12 * 7"``). The answer is ``fields["answer"]``: an int, or a string like
    ``"84"`` / ``"1,024."`` (regex parser), or a dict with an ``"answer"`` key (json parser).
    """
    if "expression" in fields:
        m = _EXPR_RE.match(str(fields["expression"]))
        if not m:
            return False, f"cannot read expression {fields['expression']!r}"
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    else:
        missing = [k for k in ("a", "op", "b") if k not in fields]
        if missing:
            return False, f"missing field(s) {', '.join(missing)}"
        op = str(fields["op"]).strip()
        try:
            a, b = _int(fields["a"], "a"), _int(fields["b"], "b")
        except ValueError as e:
            return False, str(e)
    op = {"×": "*", "x": "*"}.get(op, op)
    if op not in _OPS:
        return False, f"unsupported operator {op!r}"
    answer = fields.get("answer")
    if isinstance(answer, Mapping):
        answer = answer.get("answer")
    if answer is None:
        return False, "no answer"
    try:
        got = _int(answer, "answer")
    except ValueError as e:
        return False, str(e)
    expected = _OPS[op](a, b)
    if got != expected:
        return False, f"{a} {op} {b} = {expected}, got {got}"
    return True, None


# ---------------------------------------------------------------- LLM judge

JUDGE_SYSTEM = (
    "You are a strict evaluator of training data. Read the task and the response, judge the response "
    "against the criteria, explain briefly, then give an integer score from 1 (worst) to 10 (best) on the "
    "last line, exactly as 'Score: N'."
)


def judge_prompt(response: str, criteria: str, *, task: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking a judge model to score ``response`` from 1 to 10 against ``criteria``."""
    parts = []
    if task:
        parts.append(f"## Task\n{task.strip()}")
    parts.append(f"## Criteria\n{criteria.strip()}")
    parts.append(f"## Response\n{response.strip()}")
    parts.append("Explain your judgement in at most three sentences, then end with 'Score: N' (1-10).")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


_SCORE_RE = re.compile(r"score\s*[*_]*\s*[:=]\s*[*_]*\s*(\d+(?:\.\d+)?)(?:\s*/\s*10)?", re.IGNORECASE)
_FRACTION_RE = re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b")


def parse_judge_score(text: str, threshold: float = 7) -> Verdict:
    """The judge's score (the last ``Score: N``, else the last ``N/10``) as a :class:`Verdict`:
    ``ok`` when score >= ``threshold``. A reply without a score in 1-10 is a failed verdict with
    ``score=None``."""
    text = text or ""
    matches = _SCORE_RE.findall(text) or _FRACTION_RE.findall(text)
    if not matches:
        return Verdict(False, "judge reply has no score")
    score = float(matches[-1])
    if not 1 <= score <= 10:
        return Verdict(False, f"judge score {matches[-1]} is outside 1-10")
    if score.is_integer():
        score = int(score)
    if score >= threshold:
        return Verdict(True, None, score)
    return Verdict(False, f"judge score {score} < {threshold}", score)
