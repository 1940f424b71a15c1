"""The report stage's renderer: a prepared view-model through the Jinja template into one ``report.html``.

The page is self-contained (the stylesheet inlined, plots as inline PNG data URIs, no JavaScript) and
opens offline: nothing it shows is fetched from elsewhere. Autoescaping is on, so every value that
comes from a design, a record or a model is escaped; what goes on the page is decided beforehand in
:mod:`pretrainlab.report.prepare`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from pretrainlab.report.prepare import prepare_report
from pretrainlab.report.view import HARNESS_SECTION, SECTIONS, Report
from pretrainlab.runs import write_atomic

__all__ = ["HARNESS_SECTION", "SECTIONS", "render_html", "render_report", "write_report"]

_PACKAGE = __name__.rpartition(".")[0]  # pretrainlab.report: templates/ and report.css live beside this file
TEMPLATE = "report.html.jinja"
STYLESHEET = "report.css"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader(_PACKAGE, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=1)
def _stylesheet() -> str:
    return files(_PACKAGE).joinpath(STYLESHEET).read_text(encoding="utf-8")


def render_html(report: Report) -> str:
    """The page of ``report`` as one HTML document, with the stylesheet inlined."""
    return _environment().get_template(TEMPLATE).render(report=report, css=Markup(_stylesheet()))


def write_report(out_path: Path, report: Report) -> Path:
    """Write the page of ``report`` to ``out_path`` (atomically) and return that path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, render_html(report))
    return out_path


def render_report(out_path: Path, **inputs: Any) -> Path:
    """Prepare the view-model from raw run inputs, write the page to ``out_path`` and return that path.

    The inputs are the keyword arguments of :func:`pretrainlab.report.prepare.prepare_report`, which
    says what each holds.
    """
    return write_report(out_path, prepare_report(**inputs))
