"""Behaviour of the built-in procedural worlds and of world resolution."""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from pydantic import ValidationError

from pretrainlab.exercises import vocab
from pretrainlab.exercises.base import Exercise
from pretrainlab.exercises.biographies import ATTRIBUTES, QUESTIONS, TEMPLATES, Biographies
from pretrainlab.exercises.khop import KHop
from pretrainlab.exercises.modarith import ModArith
from pretrainlab.exercises.registry import resolve_exercise

SMALL = {
    "biographies": {"people": 40, "multiplicity": 3, "permute": True},
    "khop": {"documents": 50, "probes_per_hop": 5},
    "modarith": {"documents": 50, "probes_per_ops": 5},
}


def make(kind: str, seed: int = 0, **overrides) -> Exercise:
    cls = resolve_exercise(kind)
    return cls(cls.Params(**{**SMALL[kind], **overrides}), seed)


def snapshot(world: Exercise) -> tuple[list, list]:
    docs = [(d.text, json.dumps(d.params, sort_keys=True)) for d in world.documents()]
    probes = [(p.prompt, p.answer, json.dumps(p.meta, sort_keys=True)) for p in world.probes()]
    return docs, probes


# ---- every world ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_same_seed_same_output_different_seed_different(kind):
    first, again, other = snapshot(make(kind, 7)), snapshot(make(kind, 7)), snapshot(make(kind, 8))
    assert first == again
    assert first[0] != other[0]
    assert first[1] != other[1]


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_documents_and_probes_follow_the_contract(kind):
    world = make(kind)
    assert world.generator == f"world:{kind}@{type(world).version}"
    parts = {"biographies": {"bio", "qa"}, "khop": {"chain"}, "modarith": {"expr"}}[kind]
    for doc in world.documents():
        assert doc.params["part"] in parts
        assert json.loads(json.dumps(doc.params)) == doc.params
        assert doc.text.isascii() and "<|" not in doc.text and doc.text == doc.text.strip()
    probes = list(world.probes())
    assert probes
    for p in probes:
        assert p.answer.startswith(" ") and not p.answer.startswith("  ")
        assert "\n" not in p.answer and p.answer.strip()
        assert not p.prompt.endswith(" ")
        assert p.meta["group"] and p.meta["split"] in {"seen", "heldout", "all"}
        assert json.loads(json.dumps(p.meta)) == p.meta


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_params_reject_negative_counts_and_unknown_keys(kind):
    cls = resolve_exercise(kind)
    count = {"biographies": "people", "khop": "documents", "modarith": "documents"}[kind]
    with pytest.raises(ValidationError):
        cls.Params(**{count: -1})
    with pytest.raises(ValidationError, match="no_such_knob"):
        cls.Params(no_such_knob=1)
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{kind}.{name} has no description"


def test_worlds_accept_a_plain_mapping_of_knobs():
    assert snapshot(Biographies({"people": 3}, 1)) == snapshot(Biographies(Biographies.Params(people=3), 1))


# ---- biographies ----------------------------------------------------------------------------------


def test_vocabulary_pools_are_unique_and_sized():
    sizes = {
        "first": (vocab.FIRST_NAMES, 400),
        "middle": (vocab.MIDDLE_NAMES, 400),
        "last": (vocab.LAST_NAMES, 1000),
        "cities": (vocab.CITIES, 200),
        "universities": (vocab.UNIVERSITIES, 300),
        "majors": (vocab.MAJORS, 100),
        "employers": (vocab.EMPLOYERS, 263),
    }
    for name, (pool, size) in sizes.items():
        assert len(pool) == len(set(pool)) == size, name
        assert all(re.fullmatch(r"[A-Za-z ,]+", item) for item in pool), name
    assert len(vocab.EMPLOYER_CITIES) == len(vocab.EMPLOYERS)


def test_templates_are_many_distinct_and_have_one_subject_slot():
    for attr in ATTRIBUTES:
        templates = TEMPLATES[attr]
        assert len(templates) >= 20 and len(set(templates)) == len(templates)
        for t in templates:
            assert len(re.findall(r"\{[SsPp]\}", t)) == 1, t
            assert t.count("{v}") == 1 and t.endswith(".") and t.isascii(), t


def test_people_have_unique_names_and_consistent_employer_cities():
    world = Biographies({"people": 2000}, 3)
    names = [p.name for p in world.people]
    assert len(set(names)) == len(names)
    for person in world.people:
        assert len(person.name.split()) == 3
        employer = vocab.EMPLOYERS.index(person.values["employer"])
        assert person.values["employer_city"] == vocab.EMPLOYER_CITIES[employer]
        assert re.fullmatch(r"[A-Z][a-z]+ ([1-9]|1\d|2[0-8]), (19\d\d|20\d\d)", person.values["birth_date"])


def test_multiplicity_gives_k_bios_with_different_templates_and_permuted_order():
    world = Biographies({"people": 50, "multiplicity": 5, "permute": True}, 11)
    bios = [d for d in world.documents() if d.params["part"] == "bio"]
    by_person: dict[int, list] = {}
    for doc in bios:
        by_person.setdefault(doc.params["person"], []).append(doc)
    assert len(by_person) == 50 and all(len(docs) == 5 for docs in by_person.values())
    for docs in by_person.values():
        assert sorted(d.params["copy"] for d in docs) == list(range(5))
        assert len({d.text for d in docs}) == 5
        for a, b in combinations(docs, 2):
            for attr in ATTRIBUTES:
                assert a.params["templates"][attr] != b.params["templates"][attr]
    orders = Counter(tuple(d.params["order"]) for d in bios)
    assert len(orders) > 50
    assert all(sorted(o) == sorted(ATTRIBUTES) for o in orders)
    # The K bios of one person are not written back to back.
    persons = [d.params["person"] for d in world.documents()]
    assert sum(a == b for a, b in zip(persons, persons[1:], strict=False)) < len(persons) // 10


def test_without_permute_the_sentence_order_is_fixed():
    world = Biographies({"people": 20, "multiplicity": 2}, 0)
    assert {tuple(d.params["order"]) for d in world.documents() if d.params["part"] == "bio"} == {ATTRIBUTES}


def test_multiplicity_beyond_the_templates_reuses_them_in_rounds():
    world = Biographies({"people": 2, "multiplicity": 30}, 0)
    bios = [d for d in world.documents() if d.params["part"] == "bio" and d.params["person"] == 0]
    bios.sort(key=lambda d: d.params["copy"])
    first_round = [d.params["templates"]["major"] for d in bios[: len(TEMPLATES["major"])]]
    assert sorted(first_round) == list(range(len(TEMPLATES["major"])))


PRONOUN_PATTERNS = {"male": r"\b(he|He|his|His)\b", "female": r"\b(she|She|her|Her)\b"}


def _sentences(doc) -> list[str]:
    """Split a bio into its six sentences by rendering positions: each ends with '.'"""
    parts = re.split(r"(?<=\.) ", doc.text)
    assert len(parts) == 6, doc.text
    return parts


@pytest.mark.parametrize("fullname", [False, True])
def test_first_sentence_names_the_person_and_fullname_names_them_everywhere(fullname):
    world = Biographies({"people": 30, "multiplicity": 2, "permute": True, "fullname": fullname}, 5)
    for doc in world.documents():
        if doc.params["part"] != "bio":
            continue
        sentences = _sentences(doc)
        name = doc.params["name"]
        assert name in sentences[0]
        for sentence, attr in zip(sentences, doc.params["order"], strict=True):
            assert doc.params["values"][attr] in sentence
        named = [name in s for s in sentences]
        assert named == ([True] * 6 if fullname else [True] + [False] * 5)
        if not fullname:
            pronoun = PRONOUN_PATTERNS[doc.params["gender"]]
            assert all(re.search(pronoun, s) for s in sentences[1:])


def test_qa_documents_only_for_seen_people_and_probes_match_them():
    world = Biographies({"people": 41, "qa_fraction": 0.3}, 2)
    docs = list(world.documents())
    qa_docs = {d.params["person"]: d for d in docs if d.params["part"] == "qa"}
    n_seen = round(0.3 * 41)
    assert set(qa_docs) == world.seen and len(qa_docs) == n_seen
    probes = list(world.probes())
    assert len(probes) == 41 * 6
    splits = Counter(p.meta["split"] for p in probes)
    assert splits == {"seen": 6 * n_seen, "heldout": 6 * (41 - n_seen)}
    assert Counter(p.meta["group"] for p in probes) == {f"attr={a}": 41 for a in ATTRIBUTES}
    bios_text = "\n".join(d.text for d in docs if d.params["part"] == "bio")
    for p in probes:
        person = world.people[p.meta["person"]]
        assert p.answer == f" {person.values[p.meta['attr']]}"
        assert p.prompt == f"Q: {QUESTIONS[p.meta['attr']].format(name=person.name)}? A:"
        if p.meta["split"] == "seen":
            assert p.prompt + p.answer in qa_docs[person.index].text.split("\n")
        else:
            assert p.prompt not in bios_text
            assert all(p.prompt not in d.text for d in qa_docs.values())
    for doc in qa_docs.values():
        lines = doc.text.split("\n")
        assert len(lines) == 6
        assert all(re.fullmatch(r"Q: [^?\n]+\? A: [^\n]+", line) for line in lines)


def test_qa_off_emits_no_qa_and_every_probe_is_heldout():
    world = Biographies({"people": 10, "qa": False}, 0)
    assert all(d.params["part"] == "bio" for d in world.documents())
    assert {p.meta["split"] for p in world.probes()} == {"heldout"}


@pytest.mark.parametrize(("fraction", "split"), [(1.0, "seen"), (0.0, "heldout")])
def test_qa_fraction_extremes(fraction, split):
    world = Biographies({"people": 7, "qa_fraction": fraction}, 0)
    assert {p.meta["split"] for p in world.probes()} == {split}


def test_biography_params_reject_bad_values():
    for bad in ({"people": 0}, {"multiplicity": 0}, {"qa_fraction": 1.5}, {"qa_fraction": -0.1}):
        with pytest.raises(ValidationError):
            Biographies.Params(**bad)


# ---- k-hop ----------------------------------------------------------------------------------------


def test_khop_documents_are_one_cycle_and_answers_are_kth_successors():
    world = KHop({"documents": 200, "symbols": [3, 12], "max_hops": 5, "queries_per_doc": 6}, 4)
    ks = Counter()
    for doc in world.documents():
        cycle, edges, queries = doc.params["cycle"], doc.params["edges"], doc.params["queries"]
        n = doc.params["n"]
        assert 3 <= n <= 12 and len(cycle) == len(set(cycle)) == n == len(edges)
        nxt = dict(edges)
        assert sorted(nxt) == sorted(cycle)
        node, seen = cycle[0], []
        for _ in range(n):
            seen.append(node)
            node = nxt[node]
        assert node == cycle[0] and sorted(seen) == sorted(cycle)  # a single cycle through all
        lines = doc.text.split("\n")
        assert lines[:n] == [f"edge {x} {y}" for x, y in edges]
        assert len(lines) == n + 6
        for line, (k, x, z) in zip(lines[n:], queries, strict=True):
            assert line == f"? {k} {x} {z}"
            node = x
            for _ in range(k):
                node = nxt[node]
            assert z == node
            ks[k] += 1
    assert set(ks) == {1, 2, 3, 4, 5}


def _walk(prompt: str) -> tuple[int, str]:
    """Parse a k-hop probe prompt; return (k, the k-th successor computed from its edges)."""
    *edge_lines, query = prompt.split("\n")
    nxt = {}
    for line in edge_lines:
        word, x, y = line.split(" ")
        assert word == "edge"
        nxt[x] = y
    m = re.fullmatch(r"\? (\d+) (\w+)", query)
    assert m, query
    k, node = int(m.group(1)), m.group(2)
    for _ in range(k):
        node = nxt[node]
    return k, node


@pytest.mark.parametrize(("params", "hops"), [({}, 4), ({"probe_max_hops": 7}, 7), ({"max_hops": 2}, 2)])
def test_khop_probes_are_correct_and_cover_every_k(params, hops):
    world = KHop({"documents": 5, "probes_per_hop": 6, **params}, 9)
    probes = list(world.probes())
    assert Counter(p.meta["group"] for p in probes) == {f"k={k}": 6 for k in range(1, hops + 1)}
    for p in probes:
        k, answer = _walk(p.prompt)
        assert p.meta["group"] == f"k={k}" and p.meta["k"] == k and p.meta["split"] == "all"
        assert p.answer == f" {answer}"


def test_khop_probes_do_not_depend_on_training_size():
    a = [p.prompt for p in KHop({"documents": 5}, 1).probes()]
    b = [p.prompt for p in KHop({"documents": 50}, 1).probes()]
    assert a == b


def test_khop_params_validate_the_symbol_range():
    assert KHop.Params(symbols=[5, 5]).symbols == (5, 5)
    for bad in ([9, 8], [1, 4], [2, len(vocab.SYMBOLS) + 1]):
        with pytest.raises(ValidationError, match="symbols"):
            KHop.Params(symbols=bad)
    with pytest.raises(ValidationError):
        KHop.Params(max_hops=0)


# ---- modular arithmetic ---------------------------------------------------------------------------


def _evaluate(tokens: list[str], modulus: int) -> tuple[int, int, list[str]]:
    """Recursive reference evaluator: (value, operations, remaining tokens)."""
    head, rest = tokens[0], tokens[1:]
    if head.isdigit():
        assert 0 <= int(head) < modulus
        return int(head), 0, rest
    a, ops_a, rest = _evaluate(rest, modulus)
    b, ops_b, rest = _evaluate(rest, modulus)
    value = {"+": a + b, "-": a - b, "*": a * b}[head] % modulus
    return value, 1 + ops_a + ops_b, rest


@pytest.mark.parametrize("modulus", [23, 7, 97])
def test_modarith_lines_carry_correct_values(modulus):
    world = ModArith({"documents": 100, "modulus": modulus, "max_ops": 5}, 1)
    ops_seen = Counter()
    for doc in world.documents():
        lines = doc.text.split("\n")
        assert len(lines) == 8 == len(doc.params["lines"])
        for text, line in zip(lines, doc.params["lines"], strict=True):
            assert text == f"{line['expr']} = {line['value']}"
            value, ops, rest = _evaluate(line["expr"].split(), modulus)
            assert rest == [] and value == line["value"] and ops == line["ops"]
            ops_seen[ops] += 1
    assert set(ops_seen) == {1, 2, 3, 4, 5}


def test_modarith_probes_are_correct_cover_unseen_lengths_and_avoid_training():
    world = ModArith({"documents": 300, "probes_per_ops": 20, "max_ops": 3}, 2)
    training = {line.rsplit(" = ", 1)[0] for d in world.documents() for line in d.text.split("\n")}
    probes = list(world.probes())
    assert Counter(p.meta["group"] for p in probes) == {f"ops={n}": 20 for n in range(1, 6)}
    for p in probes:
        assert p.prompt.endswith(" =")
        expr = p.prompt[: -len(" =")]
        value, ops, _ = _evaluate(expr.split(), 23)
        assert p.answer == f" {value}" and p.meta["ops"] == ops and p.meta["split"] == "all"
        assert p.meta["in_training"] == (expr in training)
    assert not any(p.meta["in_training"] for p in probes if p.meta["ops"] >= 3)
    assert len({p.prompt for p in probes}) == len(probes)


def test_modarith_probe_range_is_configurable():
    world = ModArith({"documents": 5, "probes_per_ops": 2, "probe_max_ops": 1}, 0)
    assert {p.meta["group"] for p in world.probes()} == {"ops=1"}
    with pytest.raises(ValidationError):
        ModArith.Params(modulus=1)


# ---- resolution -----------------------------------------------------------------------------------


def test_builtin_kinds_resolve():
    assert resolve_exercise("biographies") is Biographies
    assert resolve_exercise("khop") is KHop
    assert resolve_exercise("modarith") is ModArith


def test_custom_world_resolves_from_a_dotted_path_and_runs():
    from tests.custom_world_example import Echo

    cls = resolve_exercise("tests.custom_world_example:Echo")
    assert cls is Echo
    world = cls(cls.Params(documents=3), seed=5)
    docs = list(world.documents())
    assert len(docs) == 3 and all(d.text.startswith("say ") for d in docs)
    assert all(p.answer.startswith(" ") for p in world.probes())
    with pytest.raises(ValidationError):
        cls.Params(documents=-2)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("tests.no_such_module:Echo", "cannot import module 'tests.no_such_module'"),
        ("tests.custom_world_example:Nope", "has no attribute 'Nope'"),
        ("tests.custom_world_example:NOT_A_WORLD", "is not an Exercise subclass"),
        ("nosuchworld", "unknown kind 'nosuchworld'"),
    ],
)
def test_bad_world_paths_raise_lookup_errors_that_say_why(kind, message):
    with pytest.raises(LookupError, match=re.escape(message)):
        resolve_exercise(kind)


# ---- docs -----------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "worlds.md"


def test_docs_name_every_knob_and_show_real_output():
    text = DOCS.read_text()
    for kind in ("biographies", "khop", "modarith"):
        for name in resolve_exercise(kind).Params.model_fields:
            assert f"| `{name}` |" in text, f"docs/worlds.md lacks {kind}.{name}"
    examples = [
        (Biographies({"people": 2, "multiplicity": 2, "permute": True}, 1), 0),
        (
            KHop(
                {"documents": 1, "symbols": [5, 6], "max_hops": 3, "queries_per_doc": 3, "probes_per_hop": 1},
                1,
            ),
            0,
        ),
        (ModArith({"documents": 1, "lines_per_doc": 4, "probes_per_ops": 1}, 1), 0),
    ]
    bios_world = examples[0][0]
    examples.append((bios_world, [d.params["part"] for d in bios_world.documents()].index("qa")))
    for world, index in examples:
        doc = list(world.documents())[index]
        assert f"```text\n{doc.text}\n```" in text
    probe = next(p for p in examples[1][0].probes() if p.meta["k"] == 3)
    assert json.dumps(probe.prompt) in text and json.dumps(probe.answer) in text


def test_khop_pool_limits_the_symbols():
    world = KHop({"documents": 50, "symbols": [4, 6], "pool": 10}, 3)
    used = {s for doc in world.documents() for s in doc.params["cycle"]}
    assert used <= set(vocab.SYMBOLS[:10])
    with pytest.raises(ValidationError, match="pool"):
        KHop.Params(symbols=[4, 8], pool=5)
