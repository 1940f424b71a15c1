"""Collapse watch: diversity values on hand-checkable inputs, and warnings that fire for a planted
collapsed exercise (three sentences recombined) but not for a varied one."""

from __future__ import annotations

import random

import pytest

from pretrainlab.curate.diversity import CollapseThresholds, collapse_warnings, diversity_stats


def _varied(seed: int, docs: int = 300) -> list[str]:
    """Documents of three 12-word sentences drawn from a 3000-word vocabulary."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    return [
        " ".join(" ".join(rng.choice(vocab) for _ in range(12)) + "." for _ in range(3)) for _ in range(docs)
    ]


SENTENCES = [
    "The river town keeps its old stone bridge because the merchants still use it daily.",
    "Every spring the farmers bring their wool to the market square beside the church.",
    "A young clerk at the harbour office records each ship that arrives before noon.",
]


def _collapsed(seed: int, docs: int = 300) -> list[str]:
    """The same three sentences recombined: each document is three of them in some order."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(SENTENCES) for _ in range(3)) for _ in range(docs)]


def test_distinct_n_by_hand() -> None:
    s = diversity_stats(["a b a b", "a b c"])
    assert s["distinct_1"] == round(3 / 7, 4)  # a b a b a b c: 3 kinds of 7 words
    assert s["distinct_2"] == 0.6  # ab ba ab | ab bc: 3 kinds of 5
    assert s["distinct_3"] == 1.0  # aba bab | abc
    assert s["distinct_4"] == 1.0  # abab
    assert s["sample_docs"] == 2 and s["sample_words"] == 7


def test_ngrams_do_not_cross_documents() -> None:
    s = diversity_stats(["x y", "z w"])
    assert s["distinct_2"] == 1.0 and s["distinct_3"] == 0.0  # 2 bigrams, none across "y z"


def test_self_repetition_by_hand() -> None:
    docs = [
        "a b c d",  # shares "a b c" with the next document
        "x a b c",
        "p q r p q r",  # repeats "p q r" only inside itself: not counted
        "u v w",
        "a b",  # too short to hold a 3-gram: not in the denominator
    ]
    assert diversity_stats(docs, self_repetition_n=3)["self_repetition"] == 0.5  # 2 of 4


def test_keeps_the_keys_the_report_reads() -> None:
    s = diversity_stats(_varied(0))
    assert {"distinct_2", "compression_ratio"} <= s.keys()
    assert 0 < s["distinct_2"] <= 1 and s["compression_ratio"] > 1
    assert diversity_stats([])["distinct_2"] == 0.0
    assert diversity_stats(["a b"], near_dup_share=0.25)["near_dup_share"] == 0.25
    assert "near_dup_share" not in diversity_stats(["a b"])


def test_sample_is_bounded_and_spread() -> None:
    texts = [f"doc {i} " + "w " * 48 for i in range(1000)]  # 50 words each
    s = diversity_stats(texts, sample=400, max_words=5000)
    assert s["sample_docs"] == 100 and s["sample_words"] == 5000
    everything = diversity_stats(texts, sample=None, max_words=None)
    assert everything["sample_docs"] == 1000


def test_collapsed_exercise_warns_against_seeds_and_rest() -> None:
    seeds, rest = diversity_stats(_varied(1)), diversity_stats(_varied(2))
    collapsed = diversity_stats(_collapsed(3))
    warnings = collapse_warnings(collapsed, seed_stats=seeds, corpus_stats=rest, exercise="rephrase")
    joined = "\n".join(warnings)
    for against in ("its seeds", "the rest of the corpus"):
        mine = [w for w in warnings if against in w]
        assert {m.split(":")[1].split()[0] for m in mine} >= {"compression", "distinct-2", "self-repetition"}
    assert all(w.startswith("exercise 'rephrase':") for w in warnings)
    # both values and the threshold are stated
    assert (
        f"compression ratio {collapsed['compression_ratio']:.2f} vs {seeds['compression_ratio']:.2f}"
        in joined
    )
    assert "warns above 1.5x" in joined and "warns below 0.6x" in joined and "above 0.2" in joined


def test_varied_exercise_does_not_warn() -> None:
    seeds, rest = diversity_stats(_varied(1)), diversity_stats(_varied(2))
    varied = diversity_stats(_varied(4))
    assert collapse_warnings(varied, seed_stats=seeds, corpus_stats=rest, exercise="rephrase") == []
    assert collapse_warnings(varied, exercise="rephrase") == []  # nothing to compare with


def test_thresholds_are_the_callers() -> None:
    seeds, varied = diversity_stats(_varied(1)), diversity_stats(_varied(4))
    strict = CollapseThresholds(compression_ratio=0.5)  # any ratio above half the seeds' warns
    (warning,) = collapse_warnings(varied, seeds, thresholds=strict, exercise="x")
    assert "compression ratio" in warning and "0.5x" in warning


def test_near_duplicate_share_when_given() -> None:
    texts = _varied(1)
    ours = diversity_stats(texts, near_dup_share=0.4)
    ref = diversity_stats(texts, near_dup_share=0.05)
    (warning,) = collapse_warnings(ours, corpus_stats=ref, exercise="x")
    assert "near-duplicate share 0.400 vs 0.050 in the rest of the corpus" in warning
    # only one side has it: no comparison
    assert collapse_warnings(ours, corpus_stats=diversity_stats(texts), exercise="x") == []


@pytest.mark.parametrize("small", ["ours", "ref"])
def test_too_small_to_compare(small: str) -> None:
    tiny, seeds = diversity_stats(_collapsed(3, docs=3)), diversity_stats(_varied(1))
    ours, ref = (tiny, seeds) if small == "ours" else (diversity_stats(_collapsed(3)), tiny)
    assert collapse_warnings(ours, ref, exercise="x") == []


def test_unequal_samples_are_said() -> None:
    ours, ref = diversity_stats(_collapsed(3, docs=300)), diversity_stats(_varied(1, docs=60))
    warnings = collapse_warnings(ours, ref, exercise="x")
    assert warnings and all(
        w.endswith(f"samples of {ours['sample_words']:,} vs 2,160 words") for w in warnings
    )
