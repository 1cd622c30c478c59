r"""Dataset text made safe for a public Markdown page (model cards, audit reports): no HTML or Markdown injection,
and optional redaction of slurs and profanity, since toxicity data is offensive.

Example:
    >>> print(escape_markdown("<script>x</script> | ![a](http://e)"))
    &lt;script&gt;x&lt;/script&gt; \| \!\[a\](http://e)
    >>> print(redact_text("you are a bastard"))
    you are a b******
    >>> excerpt("a long review " * 20 + "seen on tuesday.", around="tuesday", width=40)
    '…review a long review seen on tuesday.'
    >>> visible_text("evil\u202etxt.exe\x00")
    'evil⟨U+202E⟩txt.exe⟨U+0000⟩'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Slurs and profanity masked by `redact=True` (whole words, any case; a trailing \w* catches inflections).
REDACT_PATTERNS: tuple[str, ...] = (
    r"\w*fuck\w*", r"\w*shit\w*", r"bitch\w*", r"cunts?", r"dicks?", r"dickhead\w*", r"puss(?:y|ies)",
    r"\w*asshole\w*", r"bastards?", r"whores?", r"sluts?", r"fag(?:s|gots?|got)?", r"nigg\w*", r"retard\w*",
    r"trann(?:y|ies)", r"kikes?", r"spics?", r"chinks?", r"wetbacks?", r"dykes?", r"hoes?", r"twats?", r"cocks?",
    r"cocksucker\w*", r"motherf\w*", r"wankers?", r"bollocks", r"pricks?", r"coons?", r"queers?(?=\s+(?:ass|bitch))",
)
_REDACT = re.compile(r"\b(?:" + "|".join(REDACT_PATTERNS) + r")\b", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~!])")


#: Whitespace kept as it is by `visible_text` (later collapsed to single spaces where a page needs one line).
_PLAIN_WHITESPACE = frozenset("\t\n\r")


def _hidden(ch: str) -> bool:
    """A character that shows nothing, or reorders what follows: control characters (NUL, ESC, ...), format
    characters (zero-width spaces and joiners, right-to-left overrides and isolates, the byte-order mark, soft
    hyphen), line / paragraph separators, private-use and unassigned code points."""
    if ch in _PLAIN_WHITESPACE:
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def visible_text(text: Any) -> str:
    """`text` with every invisible or direction-changing character (NUL and other control characters, zero-width
    characters, right-to-left overrides, ...) replaced by a visible ``⟨U+XXXX⟩``, so a page shows what the text
    really holds and cannot be reordered or hidden by it.

    Example:
        >>> visible_text("pay\u200bpal")
        'pay⟨U+200B⟩pal'
    """
    s = "" if text is None else str(text)
    if all(ch.isprintable() or ch in _PLAIN_WHITESPACE for ch in s):  # fast path: nothing to replace
        return s
    out = []
    for i, ch in enumerate(s):
        if ch == _ZWJ and 0 < i < len(s) - 1 and _emoji(s[i - 1]) and _emoji(s[i + 1]):
            out.append(ch)  # joins two emoji into one (a family, a profession): shows nothing else
        else:
            out.append(f"⟨U+{ord(ch):04X}⟩" if _hidden(ch) else ch)
    return "".join(out)


_ZWJ = "\u200d"


def _emoji(ch: str) -> bool:
    return unicodedata.category(ch) == "So" or ch == "\ufe0f" or "\U0001f3fb" <= ch <= "\U0001f3ff"


def redact_text(text: str) -> str:
    """Mask slurs and profanity from `REDACT_PATTERNS`: first letter kept, the rest as `*`."""
    return _REDACT.sub(lambda m: m.group(0)[0] + "*" * (len(m.group(0)) - 1), text)


def _find(text: str, terms) -> re.Match | None:
    """The first whole-word, case-insensitive match of any of `terms` in `text` (a bare substring match when no
    whole-word one exists), or None."""
    terms = [terms] if isinstance(terms, str) else [t for t in (terms or []) if t]
    for whole_word in (True, False):
        found = []
        for term in terms:
            term = " ".join(str(term).split())
            if not term:
                continue
            pattern = (r"(?<!\w)" + re.escape(term) + r"(?!\w)") if whole_word else re.escape(term)
            m = re.search(pattern, text, re.IGNORECASE)
            if m:
                found.append(m)
        if found:
            return min(found, key=lambda m: m.start())
    return None


def excerpt(text: Any, around: str | list[str] | tuple[str, ...] | None = None, width: int | None = 240) -> str:
    """`text` with its whitespace collapsed, shortened to at most `width` characters (`None`: never shortened).

    When `around` (a word or phrase, or several) occurs in the text, the kept window contains its first occurrence,
    centred on it where the text allows, with an ellipsis ("…") on each side that was cut; otherwise the start is
    kept, as before. So a printout never cuts away the word it is about, e.g. a shortcut token at the end of a long
    review.

    Example:
        >>> excerpt("x " * 200 + "the end", around="end", width=12)
        '…x x the end'
    """
    s = " ".join(("" if text is None else str(text)).split())
    if width is None or len(s) <= width:
        return s
    if width < 1:
        raise ValueError(f"excerpt width must be at least 1 character, got {width}")
    m = _find(s, around) if around is not None else None
    if m is None:
        return s[: width - 1].rstrip() + "…"
    start, end = m.start(), m.end()
    if end <= width - 1:  # the term is in the kept start: cut as without `around`
        return s[: width - 1].rstrip() + "…"
    if end - start > width - 2:  # the term alone fills the window
        return "…" + s[start : start + width - 2] + "…"
    if start >= len(s) - (width - 1):  # the term is in the end: keep the end
        lo, hi = len(s) - (width - 1), len(s)
    else:  # centred on the term, an ellipsis on each side
        room = width - 2
        lo = max(1, min(start - (room - (end - start)) // 2, len(s) - room - 1))
        hi = lo + room
    if not s[lo - 1].isspace():  # do not start inside a word ...
        space = s.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(s) and not s[hi].isspace():  # ... nor end inside one
        space = s.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    return "…" + s[lo:hi].strip() + ("…" if hi < len(s) else "")


def escape_markdown(text: Any, *, redact: bool = False, max_chars: int | None = 300,
                    around: str | list[str] | None = None) -> str:
    """`text` made safe inside Markdown (and a table cell): HTML is escaped (`<` -> `&lt;`), Markdown characters
    (`|`, backticks, `*`, `_`, `[`, `]`, `!`, ...) get a backslash, newlines become spaces; longer texts are cut to
    `max_chars` with an ellipsis (`excerpt`: around the first occurrence of `around` when given, so the term of
    interest stays visible); invisible and direction-changing characters are shown as ``⟨U+XXXX⟩``
    (`visible_text`). `redact=True` masks slurs and profanity first."""
    s = visible_text(text)
    if redact:
        s = redact_text(s)
    s = excerpt(s, around=around, width=max_chars)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)
