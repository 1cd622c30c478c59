"""Identity terms and templates written by this project, and finding and swapping those terms in real text.

The audit asks: does the model's output change when only an identity term changes? `IDENTITY_TERMS` lists, per
group, adjectives that fit the same slot ("a {term} person", "{Term} people ..."); `TEMPLATES` are short sentences
with that slot, in neutral, positive and negative contexts, so that a change can be seen for sentiment and toxicity
classifiers alike. For real sentences, `find_terms` locates the terms (whole words, any case, multiword terms with a
space or a hyphen) and `swap_terms` replaces them with another term of the same group.

Example:
    >>> fill_template("I am {a_term} person.", "Asian")
    'I am an Asian person.'
    >>> [m.term for m in find_terms("Two African-American and one Muslim student.")]
    ['African American', 'Muslim']
    >>> swap_terms("my gay friend", "sexual_orientation", "straight")
    'my straight friend'
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

_PLACEHOLDERS = ("term", "Term", "a_term", "A_term")


def template_texts(templates=None) -> list[str]:
    """The template strings (the project's `TEMPLATES` when None), checked to have exactly one kind of slot."""
    if templates is None:
        return [text for _, text in TEMPLATES]
    if isinstance(templates, str):
        templates = [templates]
    out = []
    for t in templates:
        text = t[1] if isinstance(t, (tuple, list)) else t
        if not isinstance(text, str):
            raise TypeError(f"a template must be a string, got {type(text).__name__}")
        fields = {name for _, name, _, _ in Formatter().parse(text) if name is not None}
        if not fields or not fields <= set(_PLACEHOLDERS):
            raise ValueError(
                f"template {text!r} must contain a slot for the term, one of {{term}}, {{Term}}, {{a_term}}, "
                f"{{A_term}}, and no other braces (found {sorted(fields) or 'none'})."
            )
        out.append(text)
    if not out:
        raise ValueError("templates is empty: pass at least one template, or None for the project's own.")
    return out


def resolve_groups(groups=None) -> dict[str, list[str]]:
    """Identity groups as {group: [terms]}: the project's (None), a subset of them by name, or your own dict."""
    if groups is None:
        return {g: list(t) for g, t in IDENTITY_TERMS.items()}
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
    unknown = [g for g in groups if g not in IDENTITY_TERMS]
    if unknown:
        raise ValueError(f"unknown identity groups {unknown}; the project's groups are {sorted(IDENTITY_TERMS)}. "
                         "Pass a dict {group: [terms]} for your own.")
    return {g: list(IDENTITY_TERMS[g]) for g in groups}


def _article(term: str) -> str:
    low = term.lower()
    vowel_sound = low[:1] in "aeiou" and not low.startswith(("eu", "uni", "one", "use"))
    return "an" if vowel_sound else "a"


def fill_template(template: str, term: str) -> str:
    """The template with its slot filled by `term` (see `TEMPLATES` for the slots)."""
    a_term = f"{_article(term)} {term}"
    return template.format(term=term, Term=term[:1].upper() + term[1:], a_term=a_term,
                           A_term=a_term[:1].upper() + a_term[1:])


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
    parts = []
    person = r"(?=[\s-]+(?:" + "|".join(PERSON_NOUNS) + r")\b)"
    # Longest terms first, so "African American" wins over "American".
    terms = sorted({(t, g) for g, ts in items for t in ts}, key=lambda tg: -len(tg[0]))
    for term, group in terms:
        key = re.sub(r"[\s-]+", " ", term.lower())
        if key in lookup:
            continue
        lookup[key] = (term, group)
        pattern = _term_pattern(term)
        if ambiguous_need_person and key in AMBIGUOUS_TERMS:
            pattern += person
        parts.append(pattern)
    regex = re.compile(r"(?<![\w-])(?:" + "|".join(parts) + r")(?![\w-])", re.IGNORECASE)
    return regex, lookup


def find_terms(text: str, groups=None, *, ambiguous_need_person: bool = True) -> list[TermMatch]:
    """Identity terms in `text`, left to right, whole words only, case-insensitive, longest match first.

    Ambiguous terms (`AMBIGUOUS_TERMS`, e.g. "black", "old") count only before a word for people ("black people",
    "old man") unless `ambiguous_need_person=False`.
    """
    groups = resolve_groups(groups)
    regex, lookup = _compiled(tuple((g, tuple(t)) for g, t in groups.items()), ambiguous_need_person)
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


def swap_terms(text: str, group: str, replacement: str, groups=None, *, ambiguous_need_person: bool = True) -> str:
    """`text` with every term of `group` replaced by `replacement`, keeping each occurrence's case style."""
    matches = [m for m in find_terms(text, groups, ambiguous_need_person=ambiguous_need_person) if m.group == group]
    pieces, last = [], 0
    for m in matches:
        pieces += [text[last:m.start], _match_case(m.text, replacement)]
        last = m.end
    return "".join(pieces) + text[last:]


def detected_groups(text: str, groups=None, *, ambiguous_need_person: bool = True) -> dict[str, list[str]]:
    """{group: [canonical terms found]} for one text (terms in order of first appearance)."""
    out: dict[str, list[str]] = {}
    for m in find_terms(text, groups, ambiguous_need_person=ambiguous_need_person):
        if m.term not in out.setdefault(m.group, []):
            out[m.group].append(m.term)
    return out
