"""The curate stage's quality filters: each rule fires on a planted bad text and stays quiet on ordinary
prose and on typical synthetic texts, thresholds hold at the boundary, and the configuration rejects
what it should with the field at fault named."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from pretrainlab.config.base import Section
from pretrainlab.config.curate import (
    REFUSALS_ANYWHERE,
    REFUSALS_START,
    FiltersConfig,
    LengthFilter,
    LoopFilter,
    RefusalFilter,
    RepetitionFilter,
)
from pretrainlab.config.design import format_errors
from pretrainlab.curate.filters import (
    Filters,
    failed_verdicts,
    reason_class,
    repetition_reason,
    repetition_stats,
)

PROSE = """The harbour town woke slowly in winter. Fishing boats rocked against the pier while gulls argued
over scraps, and the baker on Quay Street lit his ovens an hour before anyone else was awake.

By seven the market square had filled with stalls. Farmers from the valley sold potatoes, onions and
late apples; a woman from the hills brought wool dyed in colours nobody could name. Children ran between
the carts until their parents called them back to carry baskets.

Most visitors came in summer, when the cliffs were green and the water was calm enough for swimming.
In winter the town belonged to the people who lived there. They knew which paths flooded at high tide,
which cafe kept its fire burning all afternoon, and which of the old sailors would tell a story if you
bought him a cup of tea. I cannot say the place was beautiful in January, but it was honest."""

BIOGRAPHY = (
    "Fenana Kipson Everfield's birth took place on September 26, 1907. She was welcomed into the world "
    "in Goldenhaven, MT. She attended Quinford Institute of Technology. Her academic focus was "
    "Nutrition. She was hired by Redcliff Labs. She made a living in Stonecrest, SC."
)
QA = (
    "Q: Why do leaves change colour in autumn?\nA: As days shorten, trees stop making chlorophyll, and "
    "the yellow and orange pigments that were hidden all summer show through.\n"
    "Q: Why do some leaves turn red?\nA: Some trees make anthocyanins in autumn, which protect the leaf "
    "while the tree pulls nutrients back into its branches.\n"
    "Q: Do evergreen trees lose their needles?\nA: Yes, but only a few at a time, so the tree stays green "
    "all year."
)
ARITHMETIC = (
    "A baker fills 17 trays with 23 rolls each. How many rolls does she bake?\n"
    "17 x 23 = 17 x 20 + 17 x 3 = 340 + 51 = 391, so she bakes 391 rolls. She sells 358 of them, "
    "which leaves 391 - 358 = 33 rolls for the next morning."
)
# three questions framed alike: "Q: What is" is 8 of 119 word characters, three times (0.20)
FRAMED_ARITHMETIC = (
    "Q: What is 17 times 23?\nA: 17 x 23 = 17 x 20 + 17 x 3 = 340 + 51 = 391.\n"
    "Q: What is 1000 minus 358?\nA: 1000 - 358 = 642.\n"
    "Q: What is 144 divided by 12?\nA: 144 / 12 = 12."
)
MODARITH = "+ 10 2 = 12\n+ 6 + 4 7 = 17\n* * 18 + 11 9 12 = 19\n- * 1 18 9 = 9\n- 9 0 = 9\n* 16 6 = 4"
KHOP = "edge sot lil\nedge fel fos\nedge kag kar\nedge vud sot\nedge zig fib\n? 4 fib lir\n? 1 sot lil"
# the built-in QA document: one full name six times, the pattern Gopher's top n-gram rule exists for
TEMPLATE_QA = (
    "Q: What is the birth date of Nelric Graystan Ingleett? A: February 18, 2057\n"
    "Q: What is the birth city of Nelric Graystan Ingleett? A: Rivercrest, MD\n"
    "Q: Which university did Nelric Graystan Ingleett study at? A: University of Kinwick\n"
    "Q: What major did Nelric Graystan Ingleett study? A: Music\n"
    "Q: Which company did Nelric Graystan Ingleett work for? A: Beacon Pharma\n"
    "Q: Where did Nelric Graystan Ingleett work? A: Oakburg, AK"
)

ALL = Filters(FiltersConfig.model_validate("default"))


def record(text: str, meta: object = "{}") -> dict:
    return {"id": "r1", "text": text, "meta": meta if isinstance(meta, str) else json.dumps(meta)}


def only(**sections: object) -> Filters:
    """Filters with just the given sections (verdicts off unless given)."""
    return Filters(FiltersConfig.model_validate({"verdicts": False, **sections}))


def lines_only(limit: float) -> Filters:
    rules = dict.fromkeys(("dup_para_frac", "dup_para_char_frac", "dup_line_char_frac"))
    return only(
        repetition={**rules, "dup_line_frac": limit, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {}}
    )


# ------------------------------------------------------------------------------------ quiet texts


@pytest.mark.parametrize(
    "text",
    [PROSE, BIOGRAPHY, QA, ARITHMETIC, MODARITH, KHOP],
    ids=["prose", "bio", "qa", "arith", "mod", "khop"],
)
def test_every_filter_keeps_ordinary_and_synthetic_texts(text):
    assert ALL.check(record(text, {"verdicts": {"judge": {"ok": True}}})) is None


def test_gopher_defaults_flag_short_templated_documents():
    """Documented behaviour, not a wish: Gopher's thresholds were set for web documents. A short text
    that repeats a frame or a name by design (the built-in QA document names its person six times) is
    over them; an exercise that makes such texts should leave `repetition` off or raise its limits."""
    assert ALL.check(record(TEMPLATE_QA)) == "filter:repetition (top 2-gram chars 0.24 > 0.20)"
    assert ALL.check(record(FRAMED_ARITHMETIC)) == "filter:repetition (top 3-gram chars 0.20 > 0.18)"
    relaxed = only(repetition={"top_ngram_char_frac": {2: 0.3, 3: 0.3, 4: 0.3}})
    assert relaxed.check(record(FRAMED_ARITHMETIC)) is None


# ------------------------------------------------------------------------------------------ length


def test_length_bounds_hold_at_the_boundary():
    f = only(length={"min_words": 5, "max_words": 7, "max_chars": 40})
    assert f.check(record("one two three four")) == "filter:length (4 words < 5)"
    assert f.check(record("one two three four five")) is None
    assert f.check(record("a b c d e f g")) is None
    assert f.check(record("a b c d e f g h")) == "filter:length (8 words > 7)"
    assert f.check(record("x" * 36 + " y z a b")) == "filter:length (44 chars > 40)"
    assert f.check(record("x" * 32 + " y z a b")) is None


def test_the_default_length_rule_drops_empty_texts_only():
    assert ALL.check(record("  \n ")) == "filter:length (0 words < 1)"
    assert ALL.check(record("Yes.")) is None


# -------------------------------------------------------------------------------------- repetition


def test_duplicate_lines_fire_strictly_above_the_threshold():
    three = "\n".join(["alpha", "beta", "alpha", "gamma", "alpha", "delta", "alpha", "e", "f", "g"])
    four = three.replace("g", "alpha")
    assert lines_only(0.3).check(record(three)) is None  # 3 of 10 repeat an earlier line: 0.30
    assert lines_only(0.3).check(record(four)) == "filter:repetition (duplicate lines 0.40 > 0.30)"
    assert lines_only(0.29).check(record(three)) == "filter:repetition (duplicate lines 0.30 > 0.29)"


def test_blank_lines_are_not_duplicate_lines():
    text = "\n\n\n".join(f"Paragraph {i}." for i in range(10))
    stats = repetition_stats(text)
    assert stats["duplicate lines"] == stats["duplicate paragraphs"] == 0.0
    assert lines_only(0.0).check(record(text)) is None


def test_duplicate_paragraphs_fire():
    para = "This paragraph was pasted again by mistake, word for word."
    text = "\n\n".join([para, "Something else entirely.", para, para])
    stats = repetition_stats(text)
    assert stats["duplicate paragraphs"] == 0.5
    assert ALL.check(record(text)) == "filter:repetition (duplicate paragraphs 0.50 > 0.30)"


def test_top_ngram_share_at_the_boundary():
    cfg = RepetitionFilter(top_ngram_char_frac={2: 0.2}, dup_ngram_char_frac={})
    # "ab cd" twice: 4 chars x 2 = 8 of 40 word chars, exactly 0.2; one char fewer elsewhere: over
    at = "ab cd " * 2 + "efghijklmnop qrstuvwxyz ABCDEFGHIJ"
    over = "ab cd " * 2 + "efghijklmnop qrstuvwxyz ABCDEFGHI"
    assert repetition_stats(at, cfg)["top 2-gram chars"] == 0.2
    assert repetition_reason(at, at.split(), cfg) is None
    assert repetition_reason(over, over.split(), cfg) == "filter:repetition (top 2-gram chars 0.21 > 0.20)"


def test_an_ngram_seen_once_is_no_top_ngram():
    """A short text's single 2-gram would otherwise be 100% of it."""
    assert repetition_stats("Paris.")["top 2-gram chars"] == 0.0
    assert repetition_stats("Hello there, world")["top 2-gram chars"] == 0.0


def test_a_text_pasted_twice_is_all_duplicated_ngrams():
    text = PROSE.replace("\n\n", " ") + " " + PROSE.replace("\n\n", " ")
    stats = repetition_stats(text)
    assert stats["duplicated 5-gram chars"] == stats["duplicated 10-gram chars"] == 1.0
    assert reason_class(ALL.check(record(text))) == "filter:repetition"


def _brute(words: list[str], n: int) -> tuple[float, float]:
    """The definitions, spelled out: top n-gram chars x count (if it repeats); chars of every word that
    lies in some n-gram occurring more than once."""
    total = sum(map(len, words))
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    best = max(counts.values(), default=0)
    top = max((sum(map(len, g)) for g, k in counts.items() if k == best), default=0) * best if best > 1 else 0
    covered = {i + j for i, g in enumerate(grams) if counts[g] > 1 for j in range(n)}
    return top / total, sum(len(words[i]) for i in covered) / total


@pytest.mark.parametrize("seed", range(40))
def test_ngram_shares_match_the_definition(seed):
    rng = random.Random(seed)
    vocab = ["a", "bb", "ccc", "dd", "e", "fff", "gg"][: rng.randint(2, 7)]
    words = [rng.choice(vocab) for _ in range(rng.randint(1, 200))]
    if seed % 3 == 0:  # plant a long repeat
        words = words + words[: len(words) // 2]
    sizes = dict.fromkeys(range(1, 13), 1.0)
    stats = repetition_stats(
        " ".join(words), RepetitionFilter(top_ngram_char_frac=sizes, dup_ngram_char_frac=sizes)
    )
    for n in range(1, 13):
        top, dup = _brute(words, n)
        assert stats[f"top {n}-gram chars"] == pytest.approx(top), n
        assert stats[f"duplicated {n}-gram chars"] == pytest.approx(dup), n


# ------------------------------------------------------------------------------------------- loops


def test_a_word_loop_at_the_end_fires_and_three_repeats_do_not():
    loops = only(loops={})
    assert loops.check(record("He said that it was fine fine fine.")) is None
    looped = "The model kept going and then said I am here I am here I am here I am here"
    assert loops.check(record(looped)) == "filter:loop ('I am here' x4 at the end)"
    assert loops.check(record(looped.rsplit(" I am here", 1)[0])) is None  # three repeats


def test_a_loop_cut_off_mid_unit_still_counts():
    text = "Once upon a time " + "the cat sat on the mat " * 5 + "the cat"
    assert only(loops={}).check(record(text)) == "filter:loop ('the cat sat on the mat' x5 at the end)"


def test_a_loop_that_the_text_recovers_from_is_no_loop():
    text = "Yes yes yes yes yes, she said, and then she walked home through the rain."
    assert only(loops={}).check(record(text)) is None


def test_a_character_loop_fills_the_tail():
    loops = only(loops={})
    text = "And the answer, after much thought, is: " + "ha" * 30
    assert loops.check(record(text)).startswith("filter:loop (last 30% repeats 'ha'")
    assert loops.check(record("The Nineties! " + "=-" * 40 + "\n")).startswith("filter:loop")
    assert only(loops={"tail_fraction": None}).check(record(text)) is None


def test_short_runs_of_one_character_are_no_loop():
    loops = only(loops={})
    assert loops.check(record("10^7 = 10000000")) is None
    assert loops.check(record("What a goal!!!")) is None
    assert loops.check(record("The total was 1,000,000 dollars, paid in full in 2000.")) is None


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (
            "The history of Rome is long. As an AI language model, I don't have opinions.",
            "as an ai language model",
        ),
        ("Sure, here is the rewritten text:\n\nThe harbour town woke slowly.", "sure, here"),
        ("**Sure! Here's** your story.", "sure! here"),
        ('  "I cannot help with that request."', "i cannot"),
        ("I\u2019m sorry, but I can\u2019t write that.", "i'm sorry, but"),
        ("Here's a rewritten version of the paragraph.", "here's a rewritten"),
        ("The answer is 4. As an\nAI, I compute things.", "as an ai,"),
        ("As an AI, I think so.", "as an ai,"),
        ("As a language model I do not browse.", "as a language model"),
    ],
)
def test_refusals_and_meta_talk_fire(text, phrase):
    assert ALL.check(record(text)) == f"filter:refusal ({phrase!r})"


@pytest.mark.parametrize(
    "text",
    [
        "She worked as an AI researcher at a lab in Lyon.",
        "He was hired as an aide, then as an aide-de-camp.",
        "The night was long and I cannot remember how I got home.",
        "The clerk read: here is the rewritten law, as passed by the senate in 1912.",
        "A smaller network serves as a language model for the phone keyboard.",
    ],
)
def test_prose_that_merely_resembles_a_refusal_is_kept(text):
    assert ALL.check(record(text)) is None


def test_extra_phrases_and_replacing_the_defaults():
    mine = only(refusals={"extra": ["Word Count:"], "extra_start": ["Title:"]})
    assert mine.check(record("A story.\n\nWord   count: 250")) == "filter:refusal ('word count:')"
    assert mine.check(record("Title: The Harbour\n\nThe town woke.")) == "filter:refusal ('title:')"
    assert mine.check(record("The town woke. Title: none")) is None
    assert mine.check(record("As an AI language model, no.")) == "filter:refusal ('as an ai language model')"
    replaced = only(refusals={"extra": ["word count:"], "replace_defaults": True})
    assert replaced.check(record("As an AI language model, no.")) is None


def test_the_default_phrases_are_normalized():
    for phrase in (*REFUSALS_ANYWHERE, *REFUSALS_START):
        assert phrase == phrase.lower().strip() and "  " not in phrase and "\u2019" not in phrase


# ---------------------------------------------------------------------------------------- verdicts


def test_a_failed_verdict_in_meta_removes_the_record():
    meta = {"verdicts": {"schema": {"ok": True}, "judge": {"ok": False, "score": 2}, "math": {"ok": False}}}
    assert ALL.check(record(PROSE, meta)) == "filter:verdict (judge, math)"
    assert ALL.check(record(PROSE, {"verdicts": {"judge": {"ok": True}}})) is None
    assert ALL.check(record(PROSE, {"usage": {"cached": False}})) is None  # a false elsewhere
    assert ALL.check(record(PROSE, "")) is None
    assert failed_verdicts({"verdicts": {"judge": {"ok": False}}}) == ["judge"]  # meta already parsed
    assert only().check(record(PROSE, meta)) is None  # verdicts: false


def test_verdicts_are_on_by_default_when_filters_are_given():
    f = Filters(FiltersConfig.model_validate({}))
    assert f.check(record(PROSE, {"verdicts": {"judge": {"ok": False}}})) == "filter:verdict (judge)"
    assert f.check(record("anything at all, even this: ha ha ha ha ha")) is None  # no text rule is on


def test_the_verdict_comes_first_and_reasons_are_counted_by_class():
    reason = ALL.check(record("As an AI language model, I can't.", {"verdicts": {"judge": {"ok": False}}}))
    assert reason_class(reason) == "filter:verdict"
    assert reason_class("filter:repetition (duplicate lines 0.42 > 0.30)") == "filter:repetition"


# ------------------------------------------------------------------------------------------- config


class Exercise(Section):
    filters: FiltersConfig | None = None


def errors(filters: object) -> list[str]:
    with pytest.raises(ValidationError) as e:
        Exercise.model_validate({"filters": filters})
    return format_errors(e.value)


def test_default_turns_every_rule_on_with_its_defaults():
    cfg = Exercise.model_validate({"filters": "default"}).filters
    assert cfg == FiltersConfig(
        length=LengthFilter(), repetition=RepetitionFilter(), loops=LoopFilter(), refusals=RefusalFilter()
    )
    assert cfg.verdicts and cfg.repetition.dup_line_frac == 0.3
    assert cfg.repetition.top_ngram_char_frac == {2: 0.20, 3: 0.18, 4: 0.16}
    assert cfg.repetition.dup_ngram_char_frac == {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    assert (cfg.loops.max_ngram, cfg.loops.min_repeats, cfg.loops.tail_fraction) == (8, 4, 0.3)
    off = FiltersConfig.model_validate({})
    assert off.verdicts and not any((off.length, off.repetition, off.loops, off.refusals))


def test_the_schema_offers_the_shorthand():
    schema = Exercise.model_json_schema()["$defs"]["FiltersConfig"]
    assert {"const": "default"} in schema["anyOf"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"repetiton": {}}, "filters.repetiton: unknown key"),
        ({"repetition": {"dup_lines": 0.3}}, "filters.repetition.dup_lines: unknown key"),
        ({"repetition": {"dup_line_frac": -0.1}}, "filters.repetition.dup_line_frac: must be >= 0"),
        (
            {"repetition": {"top_ngram_char_frac": {2: 1.5}}},
            "filters.repetition.top_ngram_char_frac[2]: must be <= 1",
        ),
        (
            {"repetition": {"dup_ngram_char_frac": {0: 0.1}}},
            "filters.repetition.dup_ngram_char_frac: n-gram sizes",
        ),
        ({"length": {"min_words": -1}}, "filters.length.min_words: must be >= 0"),
        ({"length": {"min_words": 9, "max_words": 3}}, "filters.length.min_words: min_words (9) is greater"),
        ({"loops": {"min_repeats": 1}}, "filters.loops.min_repeats: must be >= 2"),
        ({"loops": {"tail_fraction": 0}}, "filters.loops.tail_fraction: must be > 0"),
        ({"refusals": {"extra": ["ok", "  "]}}, "filters.refusals.extra: phrase [1] is empty"),
        (
            {"refusals": {"replace_defaults": True}},
            "filters.refusals.replace_defaults: replaces the built-in",
        ),
        ("defaults", "filters: expected a mapping of filters or 'default'"),
    ],
)
def test_bad_configuration_names_the_field(filters, expected):
    found = errors(filters)
    assert any(line.startswith(expected) for line in found), found
