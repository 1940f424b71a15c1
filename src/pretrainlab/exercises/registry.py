"""Exercise kinds by name: the built-in ones, installed plugins, and dotted paths `package.module:Class`.

Built-in kinds are named by import path and imported on first use, so asking for `biographies` does not
load the `llm` kind (and its engine client), and this package depends on no kind outside it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from pretrainlab.config.exercises import ExerciseConfig
from pretrainlab.exercises.base import Exercise

ENTRY_POINT_GROUP = "pretrainlab.exercises"
BUILTIN: dict[str, str] = {
    "biographies": "pretrainlab.exercises.biographies:Biographies",
    "khop": "pretrainlab.exercises.khop:KHop",
    "modarith": "pretrainlab.exercises.modarith:ModArith",
    "llm": "pretrainlab.llm.exercise:LLM",
    "corpus": "pretrainlab.exercises.corpus:Corpus",
}


def _import(path: str, kind: str) -> Any:
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LookupError(f"cannot import module '{module_name}' ({e})") from e
    if not hasattr(module, attr):
        raise LookupError(f"module '{module_name}' has no attribute '{attr}'")
    return _check(getattr(module, attr), kind)


def _check(obj: Any, kind: str) -> type[Exercise]:
    if not (isinstance(obj, type) and issubclass(obj, Exercise)):
        raise LookupError(f"'{kind}' is not an Exercise subclass")
    return obj


def resolve_exercise(kind: str) -> type[Exercise]:
    """A built-in kind, an installed entry point, or a dotted path `package.module:Class`."""
    if kind in BUILTIN:
        return _import(BUILTIN[kind], kind)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return _check(ep.load(), kind)
    if ":" in kind or "." in kind:
        return _import(kind, kind)
    known = ", ".join(sorted(BUILTIN))
    raise LookupError(f"unknown kind '{kind}' (built-in kinds: {known}; or a dotted path module:Class)")


def exercise_params(config: ExerciseConfig, cls: type[Exercise] | None = None) -> Any:
    """The parameters `cls` (by default the kind's class) is built with: a built-in kind's validated
    entry as it is, a plugin's own `Params` validated from its entry's other keys."""
    cls = cls or resolve_exercise(config.kind)
    if isinstance(config, cls.Params):
        return config
    return cls.Params.model_validate(config.params())


def build_exercise(config: ExerciseConfig, seed: int) -> Exercise:
    """The exercise a design entry describes, seeded."""
    cls = resolve_exercise(config.kind)
    return cls(exercise_params(config, cls), seed=seed)
