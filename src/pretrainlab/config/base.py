"""The base of every design section (strict: an unknown key is an error), and the error a validator
raises to blame one field of its section rather than the section as a whole."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A part of the design file. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class FieldError(ValueError):
    """A validator's complaint about `field` (a path relative to the section that raised it): the
    design's error message then names `<section path>.<field>`."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
