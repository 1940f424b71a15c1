"""Synthetic biographies and questions about them (bioS, Physics of Language Models 3.1)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pretrainlab.config.exercises import BiographiesParams
from pretrainlab.exercises import vocab
from pretrainlab.exercises.base import Document, Exercise, ProbeItem

ATTRIBUTES: tuple[str, ...] = (
    "birth_date",
    "birth_city",
    "university",
    "major",
    "employer",
    "employer_city",
)

# Placeholders. The subject slot, exactly one per template, is the person's full name or a pronoun:
#   {S} subject at the start of the sentence, {s} subject inside it,
#   {P} possessive at the start, {p} possessive inside.
# Later mentions in the same sentence are always pronouns: {he}, {his}, {him}. {v} is the value.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{S} was born on {v}.",
        "{P} date of birth is {v}.",
        "{S} came into the world on {v}.",
        "{S} first saw the light of day on {v}.",
        "{P} life began on {v}.",
        "{S} arrived in this world on {v}.",
        "{S} has {v} recorded as {his} date of birth.",
        "{P} birth took place on {v}.",
        "{S} was delivered into the world on {v}.",
        "{P} birth certificate is dated {v}.",
        "{S} celebrates {his} birthday each year, having been born on {v}.",
        "{S} traces {his} beginnings to {v}.",
        "On {v}, {s} was born.",
        "{v} is the day {s} was born.",
        "{S} was brought into the world on {v}.",
        "Records show that {s} was born on {v}.",
        "{S} started {his} life on {v}.",
        "{P} birth date is {v}.",
        "{S} was born in the early hours of {v}.",
        "Family records note that {s} was born on {v}.",
        "{S} drew {his} first breath on {v}.",
        "The day {s} was born was {v}.",
    ),
    "birth_city": (
        "{S} was born in {v}.",
        "{S} spent {his} early years in {v}.",
        "{S} hails from {v}.",
        "{P} hometown is {v}.",
        "{S} grew up in {v}, where {he} was born.",
        "{P} birthplace is {v}.",
        "{S} came into the world in {v}.",
        "{S} is a native of {v}.",
        "{v} is where {s} was born.",
        "{S} was raised in {v}, the city of {his} birth.",
        "{P} life started in {v}.",
        "{S} first drew breath in {v}.",
        "The city of {v} is {p} birthplace.",
        "{S} originally comes from {v}.",
        "{S} was born and raised in {v}.",
        "{S} traces {his} roots to {v}.",
        "{P} place of birth is {v}.",
        "{S} entered the world in {v}.",
        "{S} was welcomed into the world in {v}.",
        "{S} calls {v} {his} birthplace.",
        "Born in {v}, {s} spent a happy childhood there.",
        "{S} has {v} listed as {his} place of birth.",
    ),
    "university": (
        "{S} studied at {v}.",
        "{S} received {his} education at {v}.",
        "{S} attended {v}.",
        "{S} is a graduate of {v}.",
        "{P} alma mater is {v}.",
        "{S} earned {his} degree from {v}.",
        "{S} completed {his} studies at {v}.",
        "{S} enrolled at {v} for {his} undergraduate years.",
        "{S} spent {his} college years at {v}.",
        "{S} graduated from {v}.",
        "{P} university education took place at {v}.",
        "{S} pursued higher education at {v}.",
        "{v} is where {s} went to university.",
        "{S} was a student at {v}.",
        "{S} took {his} degree at {v}.",
        "{S} went on to study at {v}.",
        "{S} chose {v} for {his} studies.",
        "{S} holds a degree from {v}.",
        "{P} academic training came from {v}.",
        "{S} was educated at {v}.",
        "{S} spent four years studying at {v}.",
        "{S} obtained {his} diploma from {v}.",
    ),
    "major": (
        "{S} majored in {v}.",
        "{S} studied {v}.",
        "{P} field of study was {v}.",
        "{S} chose {v} as {his} major.",
        "{S} focused {his} studies on {v}.",
        "{S} earned a degree in {v}.",
        "{S} specialized in {v}.",
        "{P} major was {v}.",
        "{S} concentrated on {v} during {his} studies.",
        "{S} completed a program in {v}.",
        "{v} was the subject {s} majored in.",
        "{S} devoted {his} college years to {v}.",
        "{S} pursued a course of study in {v}.",
        "{S} graduated with a major in {v}.",
        "{P} academic focus was {v}.",
        "{S} read {v} at university.",
        "{S} dedicated {his} studies to {v}.",
        "{S} trained in {v}.",
        "{P} degree is in {v}.",
        "{S} took up {v} as {his} main subject.",
        "{S} studied the field of {v}.",
        "{S} spent {his} student years learning {v}.",
    ),
    "employer": (
        "{S} worked for {v}.",
        "{S} was employed by {v}.",
        "{S} took a job at {v}.",
        "{P} employer was {v}.",
        "{S} built {his} career at {v}.",
        "{S} joined the staff of {v}.",
        "{S} held a position at {v}.",
        "{S} earned {his} living at {v}.",
        "{S} spent {his} working life at {v}.",
        "{S} was on the payroll of {v}.",
        "{S} accepted a role at {v}.",
        "{S} went to work for {v}.",
        "{S} was hired by {v}.",
        "{P} job was with {v}.",
        "{S} served as an employee of {v}.",
        "{S} made a career with {v}.",
        "{P} workplace was {v}.",
        "{S} contributed to {v} as a member of staff.",
        "{S} was part of the team at {v}.",
        "{S} found employment at {v}.",
        "{P} professional life was spent at {v}.",
        "{v} is the company {s} worked for.",
    ),
    "employer_city": (
        "{S} worked in {v}.",
        "{P} job was based in {v}.",
        "{S} was employed in {v}.",
        "{S} commuted to work in {v}.",
        "{P} workplace was located in {v}.",
        "{S} spent {his} working days in {v}.",
        "{S} had an office in {v}.",
        "{S} pursued {his} career in {v}.",
        "{P} work took {him} to {v}.",
        "{S} was stationed in {v} for work.",
        "{S} practiced {his} profession in {v}.",
        "{S} made a living in {v}.",
        "{P} place of work was {v}.",
        "{v} is where {s} worked.",
        "{S} reported to an office in {v}.",
        "{S} held a job in {v}.",
        "{S} moved to {v} for {his} job.",
        "{P} employer was located in {v}.",
        "{S} did {his} work in {v}.",
        "{S} made {his} career in {v}.",
        "{S} clocked in each day in {v}.",
        "{P} professional base was {v}.",
    ),
}

MIN_TEMPLATES = min(len(t) for t in TEMPLATES.values())

# One fixed question per attribute; the QA line is `Q: <question>? A: <value>`.
QUESTIONS: dict[str, str] = {
    "birth_date": "What is the birth date of {name}",
    "birth_city": "What is the birth city of {name}",
    "university": "Which university did {name} study at",
    "major": "What major did {name} study",
    "employer": "Which company did {name} work for",
    "employer_city": "Where did {name} work",
}

# Every person has a distinct full name, so this many at most.
MAX_PEOPLE = len(vocab.FIRST_NAMES) * len(vocab.MIDDLE_NAMES) * len(vocab.LAST_NAMES)

_IDENTITY = tuple(range(len(ATTRIBUTES)))
_PERMUTATIONS = list(itertools.permutations(_IDENTITY))

PRONOUNS: dict[str, dict[str, str]] = {
    "male": {"S": "He", "s": "he", "P": "His", "p": "his", "he": "he", "his": "his", "him": "him"},
    "female": {"S": "She", "s": "she", "P": "Her", "p": "her", "he": "she", "his": "her", "him": "her"},
}


@dataclass(frozen=True)
class Person:
    index: int
    name: str
    gender: str
    values: dict[str, str]


def question_prompt(name: str, attr: str) -> str:
    """The QA line up to and including `A:`; the answer follows as ` <value>`."""
    return f"Q: {QUESTIONS[attr].format(name=name)}? A:"


def _compile(template: str, gender: str, use_name: bool) -> str:
    """Fill a template's pronouns, leaving `{name}` and `{v}` for the person and the value."""
    pronouns = PRONOUNS[gender]
    if use_name:
        slot = {"S": "{name}", "s": "{name}", "P": "{name}'s", "p": "{name}'s"}
    else:
        slot = {k: pronouns[k] for k in ("S", "s", "P", "p")}
    return template.format(**slot, he=pronouns["he"], his=pronouns["his"], him=pronouns["him"], v="{v}")


# COMPILED[gender, use_name][attribute position][template index]: filled once, used for every sentence.
COMPILED: dict[tuple[str, bool], list[list[str]]] = {
    (gender, use_name): [[_compile(t, gender, use_name) for t in TEMPLATES[attr]] for attr in ATTRIBUTES]
    for gender in PRONOUNS
    for use_name in (False, True)
}


class Biographies(Exercise):
    """People with six attributes each, described in templated biographies, plus QA about them.

    Each person gets `multiplicity` biographies: six sentences, one per attribute (birth date, birth
    city, university, major, employer, employer city), each from its own pool of templates, chosen
    without replacement across the person's biographies. The first sentence names the person in full;
    later ones use a pronoun unless `fullname`. With `permute`, each biography shuffles its sentence
    order. For a seeded subset of `round(qa_fraction * people)` people (the "seen" split) one QA
    document asks all six questions; probes ask every question of every person, labelled "seen" or
    "heldout", so held-out accuracy measures knowledge extraction from biographies alone.
    Documents come in a seeded shuffled order, so one person's biographies are spread across the corpus.
    """

    kind = "biographies"
    version = 1

    Params = BiographiesParams

    params: BiographiesParams

    def __init__(self, params: BiographiesParams | Mapping[str, Any] | None = None, seed: int = 0):
        super().__init__(vocab.coerce_params(self.Params, params), seed)
        self._people: list[Person] | None = None
        self._seen: set[int] | None = None

    @property
    def people(self) -> list[Person]:
        """Every person, by index, sampled once from the seed."""
        if self._people is None:
            self._people = _sample_people(self.params.people, self.seed)
        return self._people

    @property
    def seen(self) -> set[int]:
        """Indices of people whose QA document is in training."""
        if self._seen is None:
            n_seen = round(self.params.qa_fraction * self.params.people) if self.params.qa else 0
            rng = vocab.derive_rng(self.seed, "biographies", "seen")
            self._seen = set(rng.sample(range(self.params.people), n_seen))
        return self._seen

    def documents(self) -> Iterator[Document]:
        p = self.params
        people = self.people
        k = p.multiplicity
        template_rng = vocab.derive_rng(self.seed, "biographies", "templates")
        order_rng = vocab.derive_rng(self.seed, "biographies", "order")
        # Per person and attribute, K template indices drawn without replacement.
        counts = [len(TEMPLATES[attr]) for attr in ATTRIBUTES]
        choices = [[_draw_distinct(template_rng, n, k) for n in counts] for _ in people]
        jobs: list[tuple[str, int, int]] = [("bio", i, c) for i in range(len(people)) for c in range(k)]
        jobs += [("qa", i, 0) for i in sorted(self.seen)]
        vocab.derive_rng(self.seed, "biographies", "shuffle").shuffle(jobs)
        for part, i, copy in jobs:
            person = people[i]
            if part == "qa":
                lines = [f"{question_prompt(person.name, attr)} {person.values[attr]}" for attr in ATTRIBUTES]
                yield Document("\n".join(lines), {"part": "qa", **_person_params(person)})
                continue
            order = _PERMUTATIONS[int(order_rng.random() * len(_PERMUTATIONS))] if p.permute else _IDENTITY
            sentences = []
            for pos, a in enumerate(order):
                compiled = COMPILED[person.gender, p.fullname or pos == 0][a][choices[i][a][copy]]
                sentences.append(compiled.format(name=person.name, v=person.values[ATTRIBUTES[a]]))
            yield Document(
                " ".join(sentences),
                {
                    "part": "bio",
                    **_person_params(person),
                    "copy": copy,
                    "order": [ATTRIBUTES[a] for a in order],
                    "templates": {attr: choices[i][a][copy] for a, attr in enumerate(ATTRIBUTES)},
                    "fullname": p.fullname,
                },
            )

    def probes(self) -> Iterator[ProbeItem]:
        seen = self.seen
        for person in self.people:
            split = "seen" if person.index in seen else "heldout"
            for attr in ATTRIBUTES:
                yield ProbeItem(
                    prompt=question_prompt(person.name, attr),
                    answer=f" {person.values[attr]}",
                    meta={
                        "split": split,
                        "group": f"attr={attr}",
                        "attr": attr,
                        "person": person.index,
                        "in_training": split == "seen",
                    },
                )


def _person_params(person: Person) -> dict[str, Any]:
    return {
        "person": person.index,
        "name": person.name,
        "gender": person.gender,
        "values": dict(person.values),
    }


def _draw_distinct(rng: random.Random, n: int, k: int) -> list[int]:
    """k indices from range(n), all different while k <= n; beyond that, fresh rounds of all n."""
    out: list[int] = []
    while len(out) < k:
        # A partial Fisher-Yates shuffle; random() is much cheaper than randrange() per draw.
        pool = list(range(n))
        for j in range(min(n, k - len(out))):
            r = j + int(rng.random() * (n - j))
            pool[j], pool[r] = pool[r], pool[j]
            out.append(pool[j])
    return out


def format_date(year_offset: int, month: int, day: int) -> str:
    return f"{vocab.MONTHS[month]} {day + 1}, {vocab.FIRST_YEAR + year_offset}"


def _sample_people(n: int, seed: int) -> list[Person]:
    rng = vocab.derive_rng(seed, "biographies", "people")
    n_middle, n_last = len(vocab.MIDDLE_NAMES), len(vocab.LAST_NAMES)
    people = []
    for index, code in enumerate(rng.sample(range(MAX_PEOPLE), n)):
        code, last = divmod(code, n_last)
        first, middle = divmod(code, n_middle)
        name = f"{vocab.FIRST_NAMES[first]} {vocab.MIDDLE_NAMES[middle]} {vocab.LAST_NAMES[last]}"
        employer = rng.randrange(len(vocab.EMPLOYERS))
        values = {
            "birth_date": format_date(
                rng.randrange(vocab.YEARS), rng.randrange(len(vocab.MONTHS)), rng.randrange(vocab.DAYS)
            ),
            "birth_city": rng.choice(vocab.CITIES),
            "university": rng.choice(vocab.UNIVERSITIES),
            "major": rng.choice(vocab.MAJORS),
            "employer": vocab.EMPLOYERS[employer],
            "employer_city": vocab.EMPLOYER_CITIES[employer],
        }
        people.append(Person(index, name, rng.choice(("male", "female")), values))
    return people
