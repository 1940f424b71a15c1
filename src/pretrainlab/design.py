"""Loading a design: the schema's checks (`pretrainlab.config`) and then each exercise kind's own, so that a
design that loads is one every stage can run. Errors name the field path, e.g.
``exercises[1].max_hops: must be >= 1``; a plugin kind's parameters are validated by its own class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pretrainlab.config import Design, read_design_file
from pretrainlab.config import parse_design as parse_schema
from pretrainlab.config.design import format_errors
from pretrainlab.errors import DesignError
from pretrainlab.exercises.registry import exercise_params, resolve_exercise

__all__ = ["Design", "DesignError", "load_design", "parse_design"]


def _kind_errors(design: Design) -> list[str]:
    """Each exercise checked by its kind's code: the kind resolves, a plugin's parameters validate, and
    the kind's own checks pass."""
    errors: list[str] = []
    for i, ex in enumerate(design.exercises):
        try:
            cls = resolve_exercise(ex.kind)
            params = exercise_params(ex, cls)
        except LookupError as e:
            errors.append(f"exercises[{i}].kind: {e}")
            continue
        except ValidationError as e:
            errors.extend(format_errors(e, f"exercises[{i}]"))
            continue
        errors.extend(f"exercises[{i}].{line}" for line in cls.check(params, design))
    return errors


def parse_design(data: Any, source: str | None = None, base_dir: str | Path | None = None) -> Design:
    """Validate a design given as plain data; raises DesignError naming every bad field. Relative paths
    in it (corpora, served models) are taken from `base_dir` (default: the working directory)."""
    design = parse_schema(data, source, base_dir)
    errors = _kind_errors(design)
    if errors:
        raise DesignError(errors, source)
    return design


def load_design(path: str | Path) -> Design:
    """Read and validate a design file."""
    return parse_design(read_design_file(path), str(path), base_dir=Path(path).parent)
