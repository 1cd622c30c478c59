"""The sentence frames of an identity audit: each template or real text with one group's terms swapped in, and the
term sets and contrasts that those frames can answer (the counterfactual side of `hf_sparse.audit.identity`).

A frame holds the texts of one sentence with each of a group's terms in its slot; `template_frames` fills the
templates (adjective groups fill `TEMPLATES`, person groups `PERSON_TEMPLATES`), `text_frames` finds the groups'
terms in real texts and swaps them (gendered nouns: all flipped to female, then to male). Texts shared by frames are
encoded once: each frame keeps the rows of its texts in one batch.

Example:
    >>> frames, batch = template_frames({"religion": ["Christian", "Muslim"]}, ["I am {a_term} person."], False)
    >>> frames[0].terms, [batch[r] for r in frames[0].rows]
    (['Christian', 'Muslim'], ['I am a Christian person.', 'I am a Muslim person.'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .contrasts import resolve_contrast_side
from .terms import (
    AMBIGUOUS_TERMS,
    DEFAULT_CONTRASTS,
    PROJECT_GROUPS,
    TERM_SETS,
    detected_groups,
    fill_template,
    find_terms,
    flip_gender_nouns,
    gender_counterparts,
    group_kind,
    swap_terms,
    template_kind,
)

SWAP_AMBIGUOUS_HOW = ("Pass swap_ambiguous=True to swap them everywhere (\"a black cat\" too); by default they are "
                      "swapped only before a word for people (\"black people\").")


@dataclass
class Frame:
    """One sentence (a template, or a real text) with each of `group`'s `terms` in its slot; `rows[i]` is the row of
    the text holding `terms[i]` in the encoded batch."""

    group: str
    source: str          # the template, or the original text
    terms: list[str]
    rows: list[int]      # row of each term's text in the encoded batch
    original: str | None = None
    source_id: int = 0   # the template's or text's position: frames of one sentence share it (contrasts pair on it)


def _fills(group: str, kind: str, user_templates: bool) -> bool:
    """Whether `group` fills templates of `kind`: the project's groups their own kind; groups of your own every
    template you give, or the adjective templates by default."""
    if group in PROJECT_GROUPS:
        return group_kind(group) == kind
    return user_templates or kind == "term"


def template_frames(groups: dict, templates: list[str], user_templates: bool) -> tuple[list[Frame], list[str]]:
    """The frames of every template that each group fills (`user_templates`: the templates are the caller's, which
    groups of their own fill whatever their slot), and the batch of their distinct texts."""
    texts: dict[str, int] = {}
    frames = []
    for source_id, template in enumerate(templates):
        kind = template_kind(template)
        for group, terms in groups.items():
            if not _fills(group, kind, user_templates):
                continue
            rows = [texts.setdefault(fill_template(template, t), len(texts)) for t in terms]
            frames.append(Frame(group, template, list(terms), rows, source_id=source_id))
    return frames, list(texts)


def text_frames(groups: dict, texts: list[str], swap_ambiguous: bool) -> tuple[list[Frame], list[str], dict | None]:
    """Frames of real texts (one per group found in a text), the batch of their distinct texts, and (unless
    `swap_ambiguous`) {"n_texts", "terms", "how"} of the ambiguous adjectives left unswapped."""
    need_person = not swap_ambiguous
    batch: dict[str, int] = {}
    frames = []
    left_texts, left_terms = 0, Counter()
    for source_id, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings; got {type(text).__name__}")
        found = detected_groups(text, groups, ambiguous_need_person=need_person)
        for group, present in found.items():
            pairs = [gender_counterparts(t) for t in present]
            if group == "gender_nouns" and all(pairs):
                terms = list(pairs[0])  # (female, male) of the first noun found
                variants = [flip_gender_nouns(text, side, group, groups, ambiguous_need_person=need_person)
                            for side in ("female", "male")]
            else:
                terms = list(groups[group])
                variants = [swap_terms(text, group, t, groups, ambiguous_need_person=need_person) for t in terms]
            rows = [batch.setdefault(v, len(batch)) for v in variants]
            frames.append(Frame(group, text, terms, rows, original=present[0], source_id=source_id))
        if not swap_ambiguous:
            swapped = {(m.start, m.end) for m in find_terms(text, groups)}
            left = [m.term for m in find_terms(text, groups, ambiguous_need_person=False)
                    if m.term.lower() in AMBIGUOUS_TERMS and (m.start, m.end) not in swapped]
            if left:
                left_texts += 1
                left_terms.update(left)
    unswapped = {"n_texts": left_texts, "terms": dict(left_terms.most_common()), "how": SWAP_AMBIGUOUS_HOW}
    return frames, list(batch), (unswapped if not swap_ambiguous else None)


def no_terms_message(groups: dict, texts: list, unswapped: dict | None) -> str:
    """The error when no text holds a term of the searched groups: what was searched, and what to pass instead."""
    searched = "; ".join(f"{g} ({', '.join(ts[:3])}{', ...' if len(ts) > 3 else ''})" for g, ts in groups.items())
    msg = f"None of the {len(texts)} texts contains an identity term of the groups searched: {searched}."
    if unswapped and unswapped["n_texts"]:
        msg += (f" {unswapped['n_texts']} of them hold ambiguous adjectives ({', '.join(unswapped['terms'])}) not "
                f"before a word for people: pass swap_ambiguous=True to swap those.")
    others = sorted(set(PROJECT_GROUPS) - set(groups))
    msg += (" Pass other texts, or groups= with the terms they use: a dict of your own, e.g. "
            "groups={'my_group': ['first term', 'second term']}"
            + (f", or the project's other groups by name ({others})." if others else "."))
    return msg


def audited_term_sets(groups: dict) -> dict:
    """The project's term sets whose group is audited, restricted to the audited terms."""
    out = {}
    for name, spec in TERM_SETS.items():
        terms = [t for t in spec["terms"] if t in groups.get(spec["group"], [])]
        if terms:
            out[name] = {"group": spec["group"], "terms": terms}
    return out


def resolve_contrasts(contrasts, term_sets: dict, groups: dict, frames: list) -> list[tuple]:
    """[(label_a, pairs_a, label_b, pairs_b)]: the defaults whose sets are audited and share frames, then yours
    (checked: each side must resolve, and the two must share at least one frame)."""
    out, seen = [], set()
    sources = {}
    for f in frames:
        for t in f.terms:
            sources.setdefault((f.group, t), set()).add(f.source_id)

    def shared(pa, pb):
        sa = set().union(*(sources.get(tuple(p), set()) for p in pa)) if pa else set()
        sb = set().union(*(sources.get(tuple(p), set()) for p in pb)) if pb else set()
        return bool(sa & sb)

    for a, b in DEFAULT_CONTRASTS:
        if a in term_sets and b in term_sets:
            la, pa = resolve_contrast_side(a, term_sets, groups)
            lb, pb = resolve_contrast_side(b, term_sets, groups)
            if shared(pa, pb):
                out.append((la, pa, lb, pb))
                seen.add((la, lb))
    for item in contrasts or ():
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"contrasts must be pairs (A, B), e.g. [('names_female', 'names_male')]; got {item!r}")
        la, pa = resolve_contrast_side(item[0], term_sets, groups)
        lb, pb = resolve_contrast_side(item[1], term_sets, groups)
        if not shared(pa, pb):
            raise ValueError(f"contrast {la!r} - {lb!r}: the two sides never appear in the same sentence frame "
                             "(adjective groups fill other templates than names and gendered nouns, and in texts= mode "
                             "a text holds only the groups found in it).")
        if (la, lb) not in seen:
            out.append((la, pa, lb, pb))
            seen.add((la, lb))
    return out
