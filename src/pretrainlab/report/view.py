"""The report's view-model: plain, already-formatted values that the page template only loops over and prints.

Nothing here is HTML: every string is text, escaped by the template when it is printed. A section
without input is ``None`` (or empty), and the template shows its placeholder sentence instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SECTIONS = (
    ("summary", "Summary"),
    ("design", "Design"),
    ("data", "Data"),
    ("training", "Training"),
    ("capabilities", "Capabilities"),
    ("generations", "Generations"),
    ("ledger", "Compute ledger"),
)
"""``(id, heading)`` of the page's sections, in order; the ids are stable anchors."""

HARNESS_SECTION = ("harness", "Standard harness (lm-evaluation-harness)")
"""Shown after Capabilities only when the run has harness results (`pretrainlab eval --harness`)."""


# ------------------------------------------------------------------------------------ building blocks


@dataclass(frozen=True)
class Cell:
    """One table cell: text, optionally inside a ``<span>`` of class ``span`` (``mono``, ``ok``, ``no``)."""

    text: str = ""
    span: str = ""


@dataclass(frozen=True)
class Row:
    """A table row, with a class (``correct``, ``wrong``) or none."""

    cells: tuple[Cell, ...]
    cls: str = ""


@dataclass(frozen=True)
class Table:
    """A table: heading row, body rows, optional footer, and the class of each column's cells."""

    head: Row
    rows: tuple[Row, ...]
    columns: tuple[str, ...]
    foot: Row | None = None


@dataclass(frozen=True)
class KeyValue:
    """One row of a key/value table: ``text`` in a monospace span, or a nested ``table`` of records."""

    key: str
    text: str = ""
    table: Table | None = None


@dataclass(frozen=True)
class Figure:
    """An inline plot; ``capability`` and ``kind`` become data attributes when a capability is given."""

    src: str
    alt: str
    caption: str
    capability: str | None = None
    kind: str = "emergence"


def table(
    head: Sequence[str],
    rows: Sequence[Sequence[Cell | str]],
    *,
    key_cols: int = 1,
    numeric_from: int | None = None,
    numeric_cols: set[int] | None = None,
    wrap_cols: set[int] | None = None,
    footer: Sequence[Cell | str] | None = None,
    row_classes: Sequence[str] | None = None,
) -> Table:
    """A :class:`Table` of formatted cells.

    The first ``key_cols`` columns hold names and never wrap, numeric columns are right-aligned and
    ``wrap_cols`` keep the line breaks of their text.
    """
    numeric = set(numeric_cols or ())
    if numeric_from is not None:
        numeric |= set(range(numeric_from, len(head)))
    wrap = wrap_cols or set()
    columns = tuple(
        " ".join(n for n, on in (("key", i < key_cols), ("num", i in numeric), ("wrap", i in wrap)) if on)
        for i in range(len(head))
    )

    def row(cells: Sequence[Cell | str], cls: str = "") -> Row:
        return Row(tuple(c if isinstance(c, Cell) else Cell(c) for c in cells), cls)

    return Table(
        head=row(head),
        rows=tuple(row(r, row_classes[i] if row_classes else "") for i, r in enumerate(rows)),
        columns=columns,
        foot=row(footer) if footer else None,
    )


# ------------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class Card:
    """A headline number of the summary: its value and what it counts."""

    value: str
    label: str


@dataclass(frozen=True)
class Summary:
    cards: tuple[Card, ...]
    scores: Table | None


@dataclass(frozen=True)
class DesignBlock:
    """One part of the design (tokenizer, model, ...) as a key/value table; ``wide`` spans the grid."""

    title: str
    items: tuple[KeyValue, ...]
    wide: bool


@dataclass(frozen=True)
class Design:
    overview: tuple[KeyValue, ...] | None
    exercises: Table | None
    blocks: tuple[DesignBlock, ...]
    dump: str


@dataclass(frozen=True)
class SampleGroup:
    """The sample records of one exercise; ``count`` reads like ``3 samples``."""

    name: str
    count: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Data:
    stats: Table | None
    samples: tuple[SampleGroup, ...]
    removals: Table | None = None  # per exercise and reason
    diversity: Table | None = None
    warnings: tuple[str, ...] = ()  # collapse warnings


@dataclass(frozen=True)
class Training:
    loss: Figure
    phases: Table


@dataclass(frozen=True)
class Capability:
    """One capability: its emergence plot and, when probes are grouped, the per-group plot and table."""

    name: str
    emergence: Figure | None
    groups: Figure | None = None
    group_step: str = ""
    group_table: Table | None = None


@dataclass(frozen=True)
class PerProbe:
    """The probe-by-probe agreement line of the harness section, and the probes that differ."""

    agree: str
    compared: str
    differ: str | None
    disagreements: Table | None


@dataclass(frozen=True)
class Harness:
    """In-loop against harness values; ``table`` is ``None`` when no harness row has an in-loop step."""

    step: str = ""
    version: str = ""
    table: Table | None = None
    per_probe: PerProbe | None = None
    results: str | None = None


@dataclass(frozen=True)
class Generations:
    right: str
    total: str
    share: str
    table: Table


@dataclass(frozen=True)
class Effort:
    """Wall and CPU time of making the data against training and evaluating on it."""

    prep_wall: str
    prep_cpu: str
    model_wall: str
    model_cpu: str
    ratio: str | None


@dataclass(frozen=True)
class Ledger:
    table: Table
    effort: Effort


@dataclass(frozen=True)
class Report:
    """Everything the page shows, section by section; ``None`` or empty sections show a placeholder."""

    title: str
    design_name: str | None
    seed: str | None
    sections: tuple[tuple[str, str], ...]
    summary: Summary
    design: Design | None
    data: Data
    training: Training | None
    capabilities: tuple[Capability, ...]
    harness: Harness | None
    generations: Generations | None
    ledger: Ledger | None
    version: str

    @property
    def headings(self) -> dict[str, str]:
        """Section id to heading."""
        return dict(self.sections)
