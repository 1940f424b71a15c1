"""Errors a user can act on: each message names the field, file or engine at fault and what to do next.

The CLI prints these as one line each (a `DesignError` as one line per bad field) and exits non-zero,
without a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations


class PretrainlabError(Exception):
    """Base of every user-facing error."""


class DesignError(PretrainlabError, ValueError):
    """A design file that cannot be used; `errors` holds one ``path: message`` line per problem."""

    def __init__(self, errors: list[str], source: str | None = None):
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(errors))


class StageError(PretrainlabError, RuntimeError):
    """A stage that cannot finish for a reason the user can act on; the message says what to do.
    Nothing is marked finished, so the next run runs the stage again."""


class CorpusError(PretrainlabError, ValueError):
    """A corpus that cannot be read; the message names the corpus, the file and the problem."""


class ServeError(PretrainlabError, RuntimeError):
    """A local engine could not be resolved or started; the message says which, and what was done."""


class ExportError(PretrainlabError):
    """The model or run cannot be exported; the message says which option or file is the reason."""


class HarnessError(PretrainlabError):
    """The evaluation harness cannot run on this run; the message says why."""
