"""Group makers: turn what an audit found (a word, an identity term) into groups or counterfactuals for a fix.

- `contains_word("tuesday")`: a function text -> bool, usable as `groups=` in `fit_sparse_head`,
  `model.refit_sparse_head` and `balanced_refit` (whole-word, case-insensitive match);
- `identity_swaps(groups=["religion"])`: a function text -> list of counterfactual texts (each identity term of the
  named groups found in the text swapped for every other term of its group), usable as `augment=`;
- `ErrorSliceReport.group_maker(...)` (in `spotlight.py`) does the same for an error slice.

Example:
    >>> has_word = contains_word("tuesday")
    >>> has_word("Saw it on Tuesday."), has_word("tuesdays")
    (True, False)
    >>> identity_swaps(groups=["religion"])("my muslim neighbour")[:2]
    ['my christian neighbour', 'my jewish neighbour']
"""

from __future__ import annotations

import re

from .terms import detected_groups, resolve_groups, swap_terms


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
    """`identity_swaps(groups)(text)`: the text with each found identity term swapped for the other terms of its
    group (the project's lists in `hf_sparse.audit.terms`, or `groups={name: [terms]}`), one text per swap.

    Terms that are also ordinary adjectives (black, white, old...) count only next to a person noun unless
    `swap_ambiguous=True`, as in the identity audit.
    """

    def __init__(self, groups=None, *, swap_ambiguous: bool = False, max_per_text: int | None = None):
        self.groups = resolve_groups(groups)
        self.swap_ambiguous = bool(swap_ambiguous)
        self.max_per_text = max_per_text
        self.name = "identity swaps (" + ", ".join(self.groups) + ")"

    def __call__(self, text) -> list[str]:
        text = str(text)
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
        return out[: self.max_per_text] if self.max_per_text else out

    def __repr__(self) -> str:
        return f"identity_swaps({list(self.groups)!r})"
