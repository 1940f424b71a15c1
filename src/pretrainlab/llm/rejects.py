"""The reject log of an `llm` exercise: every item (or candidate) that did not become a record, with why.

``rejected-<exercise>.jsonl`` in the generate stage's folder holds one JSON line per rejection (the
item's index, its seed's id, the reason class, where in the chain it happened, the message, the sampled
values and the start of the raw reply); the counts by reason go to the stage's manifest. Nothing an
exercise drops is dropped silently.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

RAW_LIMIT = 2000  # characters of a rejected reply kept in the log


class RejectLog:
    """Writes rejections as they happen and counts them by reason."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.counts: Counter[str] = Counter()
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 -- closed by close()

    def write(
        self,
        *,
        index: int,
        source_id: str | None,
        reason: str,
        at: str,
        message: str | None,
        params: dict[str, Any],
        raw: str | None = None,
    ) -> None:
        self.counts[reason] += 1
        row = {
            "index": index,
            "source_id": source_id,
            "reason": reason,
            "at": at,
            "message": message,
            "params": params,
            "raw": raw[:RAW_LIMIT] if raw else None,
        }
        self._file.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")

    def by_reason(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def close(self) -> None:
        self._file.close()
