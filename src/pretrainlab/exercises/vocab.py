"""Fixed vocabularies of the built-in worlds, and the two helpers they share.

Every pool here is built without randomness, so it is the same on every machine and Python version;
a world's seed only decides which entries it draws.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

P = TypeVar("P", bound=BaseModel)


def derive_rng(seed: int, *tags: str | int) -> random.Random:
    """An independent random stream named by `tags` under `seed`.

    `random.Random` seeded with a string hashes it with SHA-512, so (unlike `hash()`) the stream is
    the same in every process.
    """
    return random.Random("/".join(["pretrainlab", str(int(seed)), *(str(t) for t in tags)]))


def coerce_params(model: type[P], params: P | Mapping[str, Any] | None) -> P:
    """Accept a Params instance, a plain mapping of knobs, or None for all defaults."""
    if isinstance(params, model):
        return params
    return model.model_validate(dict(params or {}))


def _combine(heads: Iterable[str], tails: Iterable[str]) -> list[str]:
    """All head+tail words, in order, without duplicates or doubled halves."""
    tails = list(tails)
    out: dict[str, None] = {}
    for head in heads:
        for tail in tails:
            if tail.lower() == head.lower():
                continue
            out[head + tail] = None
    return list(out)


FIRST_NAMES: list[str] = _combine(
    ["Al", "Ber", "Cal", "Dor", "El", "Fen", "Gil", "Hal", "Ir", "Jas",
     "Kel", "Lor", "Mir", "Nel", "Or", "Per", "Ros", "Sil", "Tor", "Val"],
    ["a", "an", "en", "ia", "ie", "in", "io", "is", "o", "on",
     "ana", "ette", "ian", "ina", "ius", "ric", "ton", "wyn", "ella", "ard"],
)  # fmt: skip

MIDDLE_NAMES: list[str] = _combine(
    ["Ash", "Bram", "Clay", "Dex", "Eld", "Finn", "Gray", "Hart", "Jude", "Kip",
     "Lark", "Mab", "Nash", "Oak", "Pax", "Quill", "Reed", "Sage", "Tate", "Wren"],
    ["", "a", "ie", "en", "er", "ley", "lyn", "ton", "well", "wood",
     "ric", "win", "son", "ford", "by", "more", "stan", "den", "ette", "ine"],
)  # fmt: skip

LAST_NAMES: list[str] = _combine(
    ["Aber", "Bal", "Blan", "Bur", "Cald", "Cran", "Dal", "Dra", "Ever", "Fal",
     "Gar", "Gold", "Hamp", "Hol", "Ingle", "Jen", "Kemp", "Lam", "Lind", "Mal",
     "Mor", "Nev", "Ow", "Pen", "Pres", "Quar", "Ran", "Rid", "Sand", "Shel",
     "Stan", "Tal", "Thorn", "Ul", "Vane", "War", "Whit", "Wins", "Yar", "Zell"],
    ["by", "combe", "cott", "dale", "den", "er", "ett", "field", "ford", "gate",
     "ham", "hurst", "ick", "ing", "ley", "low", "mere", "more", "ridge", "shaw",
     "son", "stead", "ton", "well", "worth"],
)  # fmt: skip

STATES: list[str] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY",
    "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND",
    "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
]  # fmt: skip

_CITY_NAMES = _combine(
    ["Silver", "Maple", "Cedar", "River", "Stone", "Lake", "Spring", "Green", "Fox", "Elm",
     "Pine", "Oak", "Clear", "Red", "Fair", "Bright", "Willow", "Rose", "Iron", "Golden"],
    ["ville", "ton", "field", "port", "burg", "dale", "haven", "view", "crest", "wood"],
)  # fmt: skip
# A stride coprime to 50 spreads the states evenly over the names.
CITIES: list[str] = [f"{name}, {STATES[(7 * i + 3) % len(STATES)]}" for i, name in enumerate(_CITY_NAMES)]

_UNIVERSITY_STEMS = _combine(
    ["Ash", "Bel", "Cor", "Dun", "Fal", "Gran", "Hav", "Kin", "Lan", "Mer", "Pem", "Quin", "Rad", "Sal",
     "Wes"],
    ["bridge", "ford", "mont", "wick"],
)  # fmt: skip
_UNIVERSITY_FORMS = [
    "{} University",
    "University of {}",
    "{} College",
    "{} Institute of Technology",
    "{} State University",
]
UNIVERSITIES: list[str] = [form.format(stem) for stem in _UNIVERSITY_STEMS for form in _UNIVERSITY_FORMS]

MAJORS: list[str] = [
    "Accounting", "Aerospace Engineering", "African Studies", "Agricultural Science", "Animal Science",
    "Anthropology", "Applied Mathematics", "Archaeology", "Architecture", "Art History",
    "Astronomy", "Astrophysics", "Biochemistry", "Bioengineering", "Biology",
    "Biomedical Engineering", "Biostatistics", "Botany", "Business Administration", "Chemical Engineering",
    "Chemistry", "Civil Engineering", "Classics", "Cognitive Science", "Communications",
    "Comparative Literature", "Computer Engineering", "Computer Science", "Creative Writing", "Criminology",
    "Dance", "Data Science", "Dentistry", "Industrial Design", "Drama",
    "Earth Science", "East Asian Studies", "Ecology", "Economics", "Education",
    "Electrical Engineering", "English Literature", "Environmental Engineering", "Environmental Science",
    "Epidemiology", "Film Studies", "Finance", "Fine Arts", "Food Science", "Forestry",
    "French", "Genetics", "Geography", "Geology", "German",
    "Graphic Design", "Health Sciences", "History", "Hospitality Management", "Human Resources",
    "Industrial Engineering", "Information Systems", "International Relations", "Journalism", "Kinesiology",
    "Latin American Studies", "Law", "Linguistics", "Management", "Marine Biology",
    "Marketing", "Materials Science", "Mathematics", "Mechanical Engineering", "Medicine",
    "Meteorology", "Microbiology", "Music", "Music Theory", "Neuroscience",
    "Nuclear Engineering", "Nursing", "Nutrition", "Oceanography", "Pharmacology",
    "Pharmacy", "Philosophy", "Photography", "Physics", "Political Science",
    "Psychology", "Public Health", "Public Policy", "Religious Studies", "Robotics",
    "Sociology", "Spanish", "Statistics", "Urban Planning", "Zoology",
]  # fmt: skip

_EMPLOYER_STEMS = [
    "Apex", "Beacon", "Bluestone", "Cascade", "Cobalt", "Crescent", "Delta", "Evergreen", "Falcon",
    "Granite", "Harbor", "Horizon", "Keystone", "Lumen", "Meridian", "Nimbus", "Northstar", "Orion",
    "Pinnacle", "Quarry", "Redcliff", "Summit", "Tidewater", "Vanguard", "Vertex", "Westgate", "Zenith",
]  # fmt: skip
_EMPLOYER_SECTORS = [
    "Systems", "Labs", "Foods", "Motors", "Bank", "Health", "Energy", "Media", "Logistics", "Pharma",
]  # fmt: skip
EMPLOYERS: list[str] = [f"{stem} {sector}" for stem in _EMPLOYER_STEMS for sector in _EMPLOYER_SECTORS][:263]
# Each employer sits in one city; a stride coprime to the number of cities spreads them out.
EMPLOYER_CITIES: list[str] = [CITIES[(37 * i + 11) % len(CITIES)] for i in range(len(EMPLOYERS))]

MONTHS: list[str] = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
FIRST_YEAR = 1900
YEARS = 200
DAYS = 28

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_BLOCKED = {"fag", "nig", "pis", "sex"}
# Short lowercase names: every consonant-vowel pair, then every consonant-vowel-consonant triple.
SYMBOLS: list[str] = [c + v for c in _CONSONANTS for v in _VOWELS] + [
    w for c in _CONSONANTS for v in _VOWELS for d in _CONSONANTS if (w := c + v + d) not in _BLOCKED
]
