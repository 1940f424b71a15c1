"""Decontamination against the design's probes and against outside benchmarks (JSONL, Parquet):
a 13-gram leak and a whole short-item leak are found and named; unrelated text is not."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrainlab.curate.benchmarks import Benchmarks, load_benchmark, load_benchmarks, read_items
from pretrainlab.curate.decontam import ProbeIndex, normalise_text

LONG_Q = "Which river flows through the old capital, and in which year was its first bridge built?"
LONG_A = "The Vell flows through Arden; its first stone bridge was built in 1214."
SHORT_Q, SHORT_A = "What is 7 + 5?", "12"
ITEMS = [
    {"qid": "geo-1", "question": LONG_Q, "answer": LONG_A},
    {"qid": "math-1", "question": SHORT_Q, "answer": SHORT_A},
    {"qid": "yes-1", "question": "Yes", "answer": None},  # one word: left out, not a leak target
]
UNRELATED = (
    "Every spring the farmers bring their wool to the market square beside the church, and the "
    "river town keeps its old stone bridge because the merchants still use it daily.\nWhat is 7 + 6? 13\nyes"
)


def _jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl"
    path.write_text(
        "\n".join(json.dumps(i) for i in ITEMS[:1])
        + "\n\n"
        + "\n".join(json.dumps(i) for i in ITEMS[1:])
        + "\n"
    )
    return path  # a blank line 2: line numbers are file lines, 1, 3, 4


def _parquet(tmp_path: Path) -> Path:
    path = tmp_path / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(ITEMS), path)
    return path


def test_normalise() -> None:
    assert normalise_text("What's 3+5=8?").split() == normalise_text("what s 3 + 5 = 8").split()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_benchmark_leaks_found_and_named(tmp_path: Path, fmt: str) -> None:
    path = _jsonl(tmp_path) if fmt == "jsonl" else _parquet(tmp_path)
    index = load_benchmark(path, "towns", ["question", "answer"], id_field="qid")
    assert (index.items, index.skipped) == (2, 1)
    # 13-gram leak, reformatted: case and punctuation differ, text around it
    leak = "Quiz night notes. which river flows through the OLD capital and in which year was its first"
    assert index.match(leak + " bridge built - nobody knew.") == ("towns", "geo-1")
    # the answer half of the long item, across the field join, is a leak too
    assert index.match("in which year was its first bridge built? The Vell flows through Arden") == (
        "towns",
        "geo-1",
    )
    # whole short item as a line (question and answer joined, formatting aside)
    assert index.match("Practice sheet\nwhat is 7+5? 12\nwell done") == ("towns", "math-1")
    assert index.match("What is 7 + 5?  12") == ("towns", "math-1")
    # no false hits: shared words, a near-miss line, the short item inside a longer line, a 1-word item
    assert index.match(UNRELATED) is None
    assert index.match("Say what is 7 + 5? 12 out loud") is None
    assert index.match("which river flows through the old capital and in which year") is None  # 12 words


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_default_ids_are_line_or_row_numbers(tmp_path: Path, fmt: str) -> None:
    path = _jsonl(tmp_path) if fmt == "jsonl" else _parquet(tmp_path)
    index = load_benchmark(path, "towns", ["question", "answer"])
    expected = "3" if fmt == "jsonl" else "2"  # JSONL: file line (after a blank one); Parquet: row
    assert index.match("what is 7 + 5 12") == ("towns", expected)
    assert [i for i, _ in read_items(path, ["question"])] == (
        ["1", "3", "4"] if fmt == "jsonl" else ["1", "2", "3"]
    )


def test_list_and_dict_fields_are_flattened(tmp_path: Path) -> None:
    path = tmp_path / "arc.jsonl"
    row = {
        "id": "a1",
        "question": "Pick one",
        "choices": {"text": ["red apple", "green pear"], "label": ["A", "B"]},
    }
    path.write_text(json.dumps(row) + "\n")
    ((item_id, text),) = read_items(path, ["question", "choices"], "id")
    assert (item_id, text) == ("a1", "Pick one red apple green pear A B")


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no item has"):
        load_benchmark(_jsonl(tmp_path), "towns", ["questoin"])
    with pytest.raises(ValueError, match="no id field"):
        load_benchmark(_jsonl(tmp_path), "towns", ["question"], id_field="nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        list(read_items(bad, ["question"]))
    with pytest.raises(ValueError, match=".jsonl or .parquet"):
        load_benchmark(tmp_path / "bench.csv", "towns", ["question"])


def test_several_benchmarks_with_their_own_n(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "alpha beta gamma delta epsilon"}) + "\n")
    _jsonl(tmp_path)
    specs = [
        SimpleNamespace(name="towns", path="bench.jsonl", fields=["question", "answer"], id="qid", ngram=13),
        SimpleNamespace(name="greek", path=str(other), fields=["text"], id=None, ngram=4),
    ]
    benchmarks = load_benchmarks(specs, tmp_path)
    assert isinstance(benchmarks, Benchmarks) and len(benchmarks) == 2
    assert benchmarks.match("we said Beta, Gamma, Delta, Epsilon!") == ("greek", "1")  # a 4-gram
    assert benchmarks.match("x\nWhat is 7+5? 12") == ("towns", "math-1")
    assert benchmarks.match(UNRELATED) is None
    assert Benchmarks([]).match("anything") is None


def test_probe_index_unchanged() -> None:
    """The design's probes keep plain whitespace words (no normalisation) and return the probe id."""
    words = " ".join(f"w{i}" for i in range(20))
    probes = [
        {"id": "p-long", "prompt": words[:40], "answer": words[40:]},
        {"id": "p-short", "prompt": "3 + 5 = ", "answer": "8"},
        {"id": "p-empty", "prompt": "", "answer": ""},  # no words: never matches a blank line
    ]
    index = ProbeIndex(probes, n=13)
    assert index.match("prefix " + " ".join(f"w{i}" for i in range(3, 16)) + " suffix") == "p-long"
    assert index.match("a line\n3  +  5 = 8\n") == "p-short"
    assert index.match("3 + 5 = 8 mod 23") is None
    assert index.match("W3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15") is None  # case matters for probes
    assert index.match("text\n\nmore") is None
