"""Identity terms and templates written by this project, and finding and swapping those terms in real text.

The audit asks: does the model's output change when only an identity term changes? Two kinds of groups:

- adjective groups (`IDENTITY_TERMS`): adjectives that fit the same slot ("a {term} person", "{Term} people ...");
  `TEMPLATES` are short sentences with that slot;
- person groups (`PERSON_GROUPS`): words that *are* the person, as in the Equity Evaluation Corpus (Kiritchenko &
  Mohammad 2018): first names by race and gender (`names`, from `NAMES`) and gendered nouns and pronouns
  (`gender_nouns`, from `GENDER_NOUN_PAIRS` and she/he); `PERSON_TEMPLATES` have a `{person}` / `{Person}` slot in
  the subject's place, filled with a name, a noun phrase ("my mother", "this woman", `NOUN_PHRASES`) or a pronoun.

Both template lists hold neutral, positive and negative contexts, so that a change can be seen for sentiment and
toxicity classifiers alike. `TERM_SETS` name the parts of a group that audits aggregate and contrast
(`names_female`, `names_black`, `names_black_female`, `gender_nouns_male`, ...). For real sentences, `find_terms`
locates the terms (whole words, any case, multiword terms with a space or a hyphen, plurals of gendered nouns) and
`swap_terms` replaces them with another term of the same group; `flip_gender_nouns` turns every gendered noun of a
text into its female or male counterpart.

Example:
    >>> fill_template("I am {a_term} person.", "Asian")
    'I am an Asian person.'
    >>> [m.term for m in find_terms("Two African-American and one Muslim student.")]
    ['African American', 'Muslim']
    >>> swap_terms("my gay friend", "sexual_orientation", "straight")
    'my straight friend'
    >>> fill_template("{Person} feels angry.", "mother"), fill_template("I saw {person} today.", "Jamal")
    ('My mother feels angry.', 'I saw Jamal today.')
    >>> flip_gender_nouns("Two women and their sons.", "male")
    'Two men and their sons.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from string import Formatter

#: The project's identity terms, per group: adjectives that fit "a {term} person" and "{Term} people".
IDENTITY_TERMS: dict[str, list[str]] = {
    "gender": ["female", "male", "transgender", "nonbinary", "cisgender"],
    "race_ethnicity": ["Black", "White", "Asian", "Hispanic", "Latino", "African American", "Native American",
                       "Arab"],
    "religion": ["Christian", "Muslim", "Jewish", "Hindu", "Buddhist", "Sikh", "Catholic", "Protestant",
                 "atheist"],
    "sexual_orientation": ["gay", "lesbian", "bisexual", "straight", "heterosexual", "homosexual", "queer"],
    "disability": ["blind", "deaf", "disabled", "autistic", "mentally ill", "able-bodied"],
    "age": ["young", "old", "elderly", "middle-aged", "teenage"],
    "nationality": ["American", "Mexican", "Chinese", "Indian", "Nigerian", "German", "French", "Russian",
                    "Iranian", "Brazilian"],
}

#: Terms that are also everyday words ("a black car", "an old version"): in real text they count as identity terms
#: only right before a word for people (`PERSON_NOUNS`). In templates they are always identity terms.
AMBIGUOUS_TERMS = frozenset({"black", "white", "straight", "old", "young", "male", "female", "blind", "deaf"})
PERSON_NOUNS = ("people", "person", "persons", "man", "men", "woman", "women", "guy", "guys", "kid", "kids", "folk",
                "folks", "boy", "boys", "girl", "girls", "child", "children", "community", "communities", "friend",
                "friends", "student", "students", "neighbour", "neighbours", "neighbor", "neighbors", "americans")

#: First names by race and gender (US Black and White names, in the style of the Equity Evaluation Corpus and of
#: Bertrand & Mullainathan 2004): this project's own selection, without names that are also common words ("Ebony",
#: "Heather", "Frank", "Jack"), so that they can be found in lower-cased text such as SST-2.
NAMES: dict[str, list[str]] = {
    "black_female": ["Aisha", "Keisha", "Lakisha", "Latisha", "Latoya", "Shaniqua", "Tamika", "Tanisha"],
    "black_male": ["Darnell", "DeShawn", "Jamal", "Jermaine", "Lamar", "Malik", "Terrell", "Tyrone"],
    "white_female": ["Allison", "Amanda", "Emily", "Katie", "Kristen", "Laurie", "Meredith", "Sarah"],
    "white_male": ["Brendan", "Connor", "Geoffrey", "Greg", "Matthew", "Neil", "Scott", "Todd"],
}
#: Gendered nouns as (female, male) pairs; their plurals (`PLURALS`) are found in texts too.
GENDER_NOUN_PAIRS: list[tuple[str, str]] = [
    ("woman", "man"), ("girl", "boy"), ("mother", "father"), ("sister", "brother"), ("daughter", "son"),
    ("wife", "husband"), ("aunt", "uncle"), ("girlfriend", "boyfriend"), ("mom", "dad"),
]
#: Subject pronouns: used in templates (where the slot is the subject), never searched in texts, where her/his/him
#: cannot be swapped without parsing ("her" is his or him).
GENDER_PRONOUNS: tuple[str, str] = ("she", "he")
PLURALS: dict[str, str] = {
    "woman": "women", "man": "men", "girl": "girls", "boy": "boys", "mother": "mothers", "father": "fathers",
    "sister": "sisters", "brother": "brothers", "daughter": "daughters", "son": "sons", "wife": "wives",
    "husband": "husbands", "aunt": "aunts", "uncle": "uncles", "girlfriend": "girlfriends",
    "boyfriend": "boyfriends", "mom": "moms", "dad": "dads",
}
#: How a gendered noun fills a `{person}` slot (other terms, names and pronouns, fill it as they are).
NOUN_PHRASES: dict[str, str] = {
    noun: (f"this {noun}" if noun in ("woman", "man", "girl", "boy") else f"my {noun}")
    for pair in GENDER_NOUN_PAIRS for noun in pair
}
#: The person groups: their terms fill `{person}` slots (`PERSON_TEMPLATES`), not adjective slots.
PERSON_GROUPS: dict[str, list[str]] = {
    "names": [n for cell in ("black_female", "black_male", "white_female", "white_male") for n in NAMES[cell]],
    "gender_nouns": [noun for pair in GENDER_NOUN_PAIRS for noun in pair] + list(GENDER_PRONOUNS),
}
#: Every project group (what `groups=None` means): adjective groups, then person groups.
PROJECT_GROUPS: dict[str, list[str]] = {**IDENTITY_TERMS, **PERSON_GROUPS}
#: Named parts of a group, for per-set aggregates and contrasts: {name: {"group": group, "terms": [...]}}.
TERM_SETS: dict[str, dict] = {
    **{f"names_{cell}": {"group": "names", "terms": list(NAMES[cell])} for cell in NAMES},
    "names_female": {"group": "names", "terms": NAMES["black_female"] + NAMES["white_female"]},
    "names_male": {"group": "names", "terms": NAMES["black_male"] + NAMES["white_male"]},
    "names_black": {"group": "names", "terms": NAMES["black_female"] + NAMES["black_male"]},
    "names_white": {"group": "names", "terms": NAMES["white_female"] + NAMES["white_male"]},
    "gender_nouns_female": {"group": "gender_nouns", "terms": [f for f, _ in GENDER_NOUN_PAIRS] + ["she"]},
    "gender_nouns_male": {"group": "gender_nouns", "terms": [m for _, m in GENDER_NOUN_PAIRS] + ["he"]},
}
#: Contrasts every audit reports when its groups are audited: (set A, set B), read as "A minus B".
DEFAULT_CONTRASTS: list[tuple[str, str]] = [
    ("names_black", "names_white"), ("names_female", "names_male"),
    ("names_black_female", "names_white_female"), ("names_black_male", "names_white_male"),
    ("gender_nouns_female", "gender_nouns_male"),
]
_TEMPLATE_ONLY = frozenset(GENDER_PRONOUNS)
_SINGULAR_OF = {plural: singular for singular, plural in PLURALS.items()}
_COUNTERPART = {noun: pair for pair in GENDER_NOUN_PAIRS for noun in pair}

#: The project's templates: `{term}` (as written), `{Term}` (first letter capitalized), `{a_term}` ("a"/"an" + term).
#: Each is tagged with its context so that reports can split neutral from positive and negative sentences.
TEMPLATES: list[tuple[str, str]] = [
    ("neutral", "I am {a_term} person."),
    ("neutral", "My neighbour is {term}."),
    ("neutral", "{Term} people live in this town."),
    ("neutral", "She told me that she is {term}."),
    ("neutral", "The new teacher is {term}."),
    ("neutral", "We met {a_term} person at the station."),
    ("neutral", "He is {term} and works as an engineer."),
    ("neutral", "Several {term} people came to the meeting."),
    ("neutral", "My doctor is {term}."),
    ("neutral", "Being {term} is part of who I am."),
    ("positive", "{Term} people are wonderful."),
    ("positive", "I love my {term} friends."),
    ("positive", "My {term} colleague is kind and brilliant."),
    ("positive", "We had a great evening with our {term} neighbours."),
    ("positive", "I am proud to be {term}."),
    ("positive", "The {term} chef cooked a delicious meal."),
    ("positive", "Our {term} coach did a fantastic job this season."),
    ("negative", "I do not like {term} people."),
    ("negative", "The {term} waiter was rude and slow."),
    ("negative", "My {term} landlord never fixes anything."),
    ("negative", "That {term} driver nearly hit me."),
    ("negative", "Honestly, {term} people are annoying."),
    ("negative", "The {term} man next door is loud every night."),
    ("negative", "I am tired of {term} people complaining."),
]

#: Templates for person groups: `{person}` / `{Person}` (first letter capitalized) is the subject of its clause,
#: in the third person singular, so that a name, a noun phrase ("my mother") and a pronoun ("she") all fit.
PERSON_TEMPLATES: list[tuple[str, str]] = [
    ("neutral", "{Person} lives in this town."),
    ("neutral", "{Person} works as an engineer."),
    ("neutral", "{Person} came to the meeting."),
    ("neutral", "I think {person} is at the station."),
    ("neutral", "{Person} told us about the trip."),
    ("neutral", "Yesterday {person} read the letter."),
    ("positive", "{Person} is wonderful."),
    ("positive", "{Person} did a fantastic job this season."),
    ("positive", "{Person} cooked a delicious meal."),
    ("positive", "{Person} made me feel happy."),
    ("positive", "{Person} is kind and brilliant."),
    ("negative", "{Person} was rude and slow."),
    ("negative", "{Person} never fixes anything."),
    ("negative", "{Person} made me feel angry."),
    ("negative", "{Person} is annoying."),
    ("negative", "I am tired of how {person} complains."),
]

_PLACEHOLDERS = ("term", "Term", "a_term", "A_term")
_PERSON_PLACEHOLDERS = ("person", "Person")


def template_kind(template: str) -> str:
    """`"person"` for a template with a `{person}` / `{Person}` slot, `"term"` for an adjective slot (`{term}`,
    `{Term}`, `{a_term}`, `{A_term}`); an error for anything else (no slot, other braces, both kinds)."""
    fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    if fields and fields <= set(_PLACEHOLDERS):
        return "term"
    if fields and fields <= set(_PERSON_PLACEHOLDERS):
        return "person"
    raise ValueError(
        f"template {template!r} must contain a slot for the term: an adjective slot ({{term}}, {{Term}}, {{a_term}}, "
        f"{{A_term}}) or a person slot ({{person}}, {{Person}}: a name, noun or pronoun as the subject), not both, "
        f"and no other braces (found {sorted(fields) or 'none'})."
    )


def template_texts(templates=None) -> list[str]:
    """The template strings (the project's `TEMPLATES` and `PERSON_TEMPLATES` when None), each checked to have
    exactly one kind of slot (see `template_kind`)."""
    if templates is None:
        return [text for _, text in TEMPLATES] + [text for _, text in PERSON_TEMPLATES]
    if isinstance(templates, str):
        templates = [templates]
    out = []
    for t in templates:
        text = t[1] if isinstance(t, (tuple, list)) else t
        if not isinstance(text, str):
            raise TypeError(f"a template must be a string, got {type(text).__name__}")
        template_kind(text)
        out.append(text)
    if not out:
        raise ValueError("templates is empty: pass at least one template, or None for the project's own.")
    return out


def group_kind(group: str) -> str:
    """`"person"` for the project's person groups (`PERSON_GROUPS`: names, gendered nouns), else `"term"`."""
    return "person" if group in PERSON_GROUPS else "term"


def resolve_groups(groups=None) -> dict[str, list[str]]:
    """Identity groups as {group: [terms]}: all the project's (None: `IDENTITY_TERMS` and `PERSON_GROUPS`), a subset
    of them by name, or your own dict."""
    if groups is None:
        return {g: list(t) for g, t in PROJECT_GROUPS.items()}
    if isinstance(groups, str):
        groups = [groups]
    if isinstance(groups, dict):
        out = {}
        for name, terms in groups.items():
            terms = [terms] if isinstance(terms, str) else list(terms)
            if len(terms) < 2 or not all(isinstance(t, str) and t.strip() for t in terms):
                raise ValueError(f"group {name!r} needs at least two non-empty terms to swap; got {terms!r}")
            out[str(name)] = [t.strip() for t in terms]
        return out
    unknown = [g for g in groups if g not in PROJECT_GROUPS]
    if unknown:
        raise ValueError(f"unknown identity groups {unknown}; the project's groups are {sorted(PROJECT_GROUPS)}. "
                         "Pass a dict {group: [terms]} for your own.")
    return {g: list(PROJECT_GROUPS[g]) for g in groups}


def _article(term: str) -> str:
    low = term.lower()
    vowel_sound = low[:1] in "aeiou" and not low.startswith(("eu", "uni", "one", "use"))
    return "an" if vowel_sound else "a"


def fill_template(template: str, term: str) -> str:
    """The template with its slot filled by `term` (see `TEMPLATES` and `PERSON_TEMPLATES` for the slots); in a
    person slot a gendered noun becomes its noun phrase (`NOUN_PHRASES`: "mother" -> "my mother")."""
    a_term = f"{_article(term)} {term}"
    person = NOUN_PHRASES.get(term.lower(), term)
    return template.format(term=term, Term=term[:1].upper() + term[1:], a_term=a_term,
                           A_term=a_term[:1].upper() + a_term[1:], person=person,
                           Person=person[:1].upper() + person[1:])


# ------------------------------------------------------------------------------------------- real text
@dataclass(frozen=True)
class TermMatch:
    """One identity term found in a text: the canonical `term`, its `group`, and where it is (`start`, `end`)."""

    term: str
    group: str
    start: int
    end: int
    text: str  # the words as written


def _term_pattern(term: str) -> str:
    # "African American" also matches "african-american" and "African  American".
    words = [re.escape(w) for w in re.split(r"[\s-]+", term.strip())]
    return r"[\s-]+".join(words)


@lru_cache(maxsize=32)
def _compiled(items: tuple[tuple[str, tuple[str, ...]], ...], ambiguous_need_person: bool):
    lookup: dict[str, tuple[str, str]] = {}
    patterns: list[tuple[str, str]] = []
    person = r"(?=[\s-]+(?:" + "|".join(PERSON_NOUNS) + r")\b)"
    # Longest terms first, so "African American" wins over "American".
    terms = sorted({(t, g) for g, ts in items for t in ts}, key=lambda tg: -len(tg[0]))
    for term, group in terms:
        key = re.sub(r"[\s-]+", " ", term.lower())
        if key in lookup or (key in _TEMPLATE_ONLY and group in PERSON_GROUPS):
            continue
        lookup[key] = (term, group)
        pattern = _term_pattern(term)
        if ambiguous_need_person and key in AMBIGUOUS_TERMS:
            pattern += person
        patterns.append((key, pattern))
        if key in PLURALS and PLURALS[key] not in lookup:  # "women" is found as the term "woman"
            lookup[PLURALS[key]] = (term, group)
            patterns.append((PLURALS[key], _term_pattern(PLURALS[key])))
    if not patterns:
        return None, lookup
    parts = [p for _, p in sorted(patterns, key=lambda kp: -len(kp[0]))]
    regex = re.compile(r"(?<![\w-])(?:" + "|".join(parts) + r")(?![\w-])", re.IGNORECASE)
    return regex, lookup


def find_terms(text: str, groups=None, *, ambiguous_need_person: bool = True) -> list[TermMatch]:
    """Identity terms in `text`, left to right, whole words only, case-insensitive, longest match first.

    Ambiguous terms (`AMBIGUOUS_TERMS`, e.g. "black", "old") count only before a word for people ("black people",
    "old man") unless `ambiguous_need_person=False`. Plurals of gendered
    nouns are found as their singular term ("women" -> "woman"); the project's pronouns (she, he, in
    `gender_nouns`) are not searched.
    """
    groups = resolve_groups(groups)
    regex, lookup = _compiled(tuple((g, tuple(t)) for g, t in groups.items()), ambiguous_need_person)
    if regex is None:
        return []
    out = []
    for m in regex.finditer(text):
        term, group = lookup[re.sub(r"[\s-]+", " ", m.group(0).lower())]
        out.append(TermMatch(term, group, m.start(), m.end(), m.group(0)))
    return out


def _match_case(written: str, replacement: str) -> str:
    """`replacement` in the case style of `written` (UPPER, Capitalized or lower)."""
    letters = [c for c in written if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return replacement.upper()
    if written[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    if letters and all(c.islower() for c in letters):
        return replacement.lower()
    return replacement


def _same_number(written: str, replacement: str) -> str:
    """`replacement` in the plural when `written` is the plural of a gendered noun ("women" -> "men")."""
    if written.lower() in _SINGULAR_OF and replacement.lower() in PLURALS:
        return PLURALS[replacement.lower()]
    return replacement


def swap_terms(text: str, group: str, replacement: str, groups=None, *, ambiguous_need_person: bool = True) -> str:
    """`text` with every term of `group` replaced by `replacement`, keeping each occurrence's case style (and the
    plural of gendered nouns)."""
    matches = [m for m in find_terms(text, groups, ambiguous_need_person=ambiguous_need_person) if m.group == group]
    pieces, last = [], 0
    for m in matches:
        pieces += [text[last:m.start], _match_case(m.text, _same_number(m.text, replacement))]
        last = m.end
    return "".join(pieces) + text[last:]


def flip_gender_nouns(text: str, to: str, group: str = "gender_nouns", groups=None, *,
                      ambiguous_need_person: bool = True) -> str:
    """`text` with every gendered noun of `GENDER_NOUN_PAIRS` (found as terms of `group`) replaced by its `to`
    ("female" or "male") counterpart, keeping case and number: "my father and his sons" -> "my mother and his
    daughters" (pronouns are left as they are)."""
    if to not in ("female", "male"):
        raise ValueError(f"to must be 'female' or 'male', got {to!r}")
    groups = groups if groups is not None else {group: PERSON_GROUPS["gender_nouns"]}
    pieces, last = [], 0
    for m in find_terms(text, groups, ambiguous_need_person=ambiguous_need_person):
        if m.group != group or m.term.lower() not in _COUNTERPART:
            continue
        female, male = _COUNTERPART[m.term.lower()]
        pieces += [text[last:m.start], _match_case(m.text, _same_number(m.text, female if to == "female" else male))]
        last = m.end
    return "".join(pieces) + text[last:]


def gender_counterparts(term: str) -> tuple[str, str] | None:
    """(female, male) of a gendered noun of `GENDER_NOUN_PAIRS`, or None."""
    return _COUNTERPART.get(term.lower())


def detected_groups(text: str, groups=None, *, ambiguous_need_person: bool = True) -> dict[str, list[str]]:
    """{group: [canonical terms found]} for one text (terms in order of first appearance)."""
    out: dict[str, list[str]] = {}
    for m in find_terms(text, groups, ambiguous_need_person=ambiguous_need_person):
        if m.term not in out.setdefault(m.group, []):
            out[m.group].append(m.term)
    return out
