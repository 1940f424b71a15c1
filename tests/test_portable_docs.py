"""Everything a user reads or runs can be followed from a clean clone: no absolute path of the machine it
was written on, and sources cited by their published names, not by notes outside the repository."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["README.md", "src", "docs", "examples"]
SUFFIXES = {".md", ".py", ".yaml", ".yml", ".jsonl", ".json", ".jinja", ".css", ".html", ".txt", ".toml"}


def shipped_text_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [p for p in candidates if p.is_file() and p.suffix in SUFFIXES]
    return files


def test_no_file_holds_this_checkouts_path_or_cites_notes_outside_the_repository():
    files = shipped_text_files()
    assert len(files) > 50
    checkout = str(ROOT)
    offenders = [
        str(p.relative_to(ROOT))
        for p in files
        if checkout in (text := p.read_text(errors="replace")) or "FIELD_NOTES" in text
    ]
    assert offenders == []
