"""Dataset text made safe for a public Markdown card: no HTML, no Markdown injection, optional redaction.

Example:
    >>> escape_markdown("<script>x</script> | ![a](http://e)")
    '&lt;script&gt;x&lt;/script&gt; \\| \\!\\[a\\]\\(http://e\\)'
    >>> redact("you are an idiot")
    'you are an i***t'
"""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-!|~])")

#: A short, deliberately incomplete list of slurs and insults that appear in public toxicity data sets; matched as
#: word prefixes, case-insensitively. Extend it with `redact(text, extra_terms=[...])`.
REDACTED_TERMS = (
    "fuck", "shit", "bitch", "cunt", "dick", "pussy", "whore", "slut", "fag", "faggot", "nigg", "retard", "idiot",
    "moron", "stupid", "bastard", "asshole", "hoe", "twat", "dyke", "tranny", "spic", "kike", "chink", "wetback",
)


def escape_markdown(text: str) -> str:
    """Escape `text` for use inside Markdown (tables included): HTML is entity-escaped, Markdown specials
    backslash-escaped, line breaks become spaces."""
    text = " ".join(str(text).split())
    text = html.escape(text, quote=False)  # & < > only: quotes are harmless in Markdown text
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def redact(text: str, extra_terms: tuple[str, ...] | list[str] = ()) -> str:
    """Mask the inner letters of words that start with a listed term (keeps first and last letter)."""
    terms = tuple(REDACTED_TERMS) + tuple(extra_terms)
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)

    def mask(m: re.Match) -> str:
        word = m.group(0)
        return word[0] + "*" * (len(word) - 2) + word[-1] if len(word) > 2 else "*" * len(word)

    return pattern.sub(mask, str(text))


def safe_text(text: str, *, redact_text: bool = False, max_chars: int = 200) -> str:
    """Truncate, optionally redact, then escape: what every dataset string goes through before a card."""
    text = " ".join(str(text).split())
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return escape_markdown(redact(text) if redact_text else text)
