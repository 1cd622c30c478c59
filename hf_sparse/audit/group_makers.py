"""Group makers: turn what an audit found (a word, an identity term) into groups or counterfactuals for a fix.

- `contains_word("tuesday")`: a function text -> bool, usable as `groups=` in `fit_sparse_head`,
  `model.refit_sparse_head` and `balanced_refit` (whole-word, case-insensitive match);
- `identity_swaps(groups=["religion"])`: a function text -> list of counterfactual texts (each identity term of the
  named groups found in the text swapped for every other term of its group, or with `across_groups=True` for
  terms of the other identity groups and back), usable as `augment=`;
- `ErrorSliceReport.group_maker(...)` (in `spotlight.py`) does the same for an error slice.

Example:
    >>> has_word = contains_word("tuesday")
    >>> has_word("Saw it on Tuesday."), has_word("tuesdays")
    (True, False)
    >>> identity_swaps(groups=["religion"])("my muslim neighbour")[:2]
    ['my christian neighbour', 'my jewish neighbour']
"""

from __future__ import annotations

import random
import re

from .terms import IDENTITY_TERMS, detected_groups, resolve_groups, swap_terms


class contains_word:  # noqa: N801  (reads as a function: groups=contains_word("tuesday"))
    """`contains_word(word)(text)` is True when `text` contains `word` as a whole word (case-insensitive)."""

    def __init__(self, word: str):
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"contains_word needs a non-empty word; got {word!r}")
        self.word = word.strip()
        self.name = f"contains {self.word!r}"
        self._pattern = re.compile(r"(?<!\w)" + re.escape(self.word) + r"(?!\w)", re.IGNORECASE)

    def __call__(self, text) -> bool:
        return bool(self._pattern.search(str(text)))

    def __repr__(self) -> str:
        return f"contains_word({self.word!r})"


class identity_swaps:  # noqa: N801
    """`identity_swaps(groups)(text)`: counterfactual versions of `text` with its identity terms swapped, for
    `augment=` (each version keeps the text's label).

    - By default each term found of `groups` (the project's lists in `hf_sparse.audit.terms`, or
      `groups={name: [terms]}`) is swapped for every other term of its group: "gay" -> "lesbian", "bisexual"...
    - `across_groups=True` breaks the link between the named groups and the label instead (what a toxicity head
      needs when it flags every mention of, say, sexual orientation): a term of `groups` is swapped for terms of
      the *other* identity groups (`hf_sparse.audit.terms.IDENTITY_TERMS`, or `others=`), and a term of the
      other groups for terms of `groups`; `per_group` random replacements per group found, chosen by `seed`
      and the text (the same text always gets the same swaps).

    Terms that are also ordinary adjectives (black, white, old...) count only next to a person noun unless
    `swap_ambiguous=True`, as in the identity audit.

    Example:
        >>> swaps = identity_swaps(["sexual_orientation"], across_groups=True, per_group=2)
        >>> len(swaps("My gay neighbour")), all("gay" not in t for t in swaps("My gay neighbour"))
        (2, True)
    """

    def __init__(self, groups=None, *, across_groups: bool = False, others=None, per_group: int = 3,
                 seed: int = 0, swap_ambiguous: bool = False, max_per_text: int | None = None):
        self.groups = resolve_groups(groups)
        self.across_groups = bool(across_groups)
        if self.across_groups:
            if groups is None:
                raise ValueError("identity_swaps(across_groups=True) needs groups=: the groups whose link with the "
                                 "label the swaps should break, e.g. groups=['sexual_orientation'].")
            others = resolve_groups(others if others is not None else list(IDENTITY_TERMS))
            self.others = {g: t for g, t in others.items() if g not in self.groups}
            if not self.others:
                raise ValueError("identity_swaps(across_groups=True) needs other groups to swap with; "
                                 f"others= holds only {sorted(others)}.")
            if int(per_group) < 1:
                raise ValueError(f"per_group must be at least 1; got {per_group!r}")
        else:
            self.others = {}
        self.per_group, self.seed = int(per_group), seed
        self.swap_ambiguous = bool(swap_ambiguous)
        self.max_per_text = max_per_text
        kind = "across groups: " if self.across_groups else ""
        self.name = f"identity swaps ({kind}" + ", ".join(self.groups) + ")"

    def __call__(self, text) -> list[str]:
        text = str(text)
        if self.across_groups:
            out = self._across(text)
        else:
            out = self._within(text)
        return out[: self.max_per_text] if self.max_per_text else out

    def _within(self, text: str) -> list[str]:
        need_person = not self.swap_ambiguous
        found = detected_groups(text, self.groups, ambiguous_need_person=need_person)
        out: list[str] = []
        for group, present in found.items():
            for term in self.groups[group]:
                if term in present:
                    continue
                swapped = swap_terms(text, group, term, self.groups, ambiguous_need_person=need_person)
                if swapped != text and swapped not in out:
                    out.append(swapped)
        return out

    def _across(self, text: str) -> list[str]:
        every = {**self.groups, **self.others}
        need_person = not self.swap_ambiguous
        found = detected_groups(text, every, ambiguous_need_person=need_person)
        rng = random.Random(f"{self.seed}:{text}")
        named_terms = [t for terms in self.groups.values() for t in terms]
        other_terms = [t for terms in self.others.values() for t in terms]
        out: list[str] = []
        for group in found:
            pool = other_terms if group in self.groups else named_terms
            for term in rng.sample(pool, min(self.per_group, len(pool))):
                swapped = swap_terms(text, group, term, every, ambiguous_need_person=need_person)
                if swapped != text and swapped not in out:
                    out.append(swapped)
        return out

    def __repr__(self) -> str:
        extra = f", across_groups=True, per_group={self.per_group}, seed={self.seed!r}" if self.across_groups else ""
        return f"identity_swaps({list(self.groups)!r}{extra})"
