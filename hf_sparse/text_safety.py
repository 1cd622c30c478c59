r"""Dataset text made safe for a public Markdown page (model cards, audit reports): no HTML or Markdown injection,
and optional redaction of slurs and profanity, since toxicity data is offensive.

Example:
    >>> print(escape_markdown("<script>x</script> | ![a](http://e)"))
    &lt;script&gt;x&lt;/script&gt; \| \!\[a\](http://e)
    >>> print(redact_text("you are a bastard"))
    you are a b******
"""

from __future__ import annotations

import re
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


def redact_text(text: str) -> str:
    """Mask slurs and profanity from `REDACT_PATTERNS`: first letter kept, the rest as `*`."""
    return _REDACT.sub(lambda m: m.group(0)[0] + "*" * (len(m.group(0)) - 1), text)


def escape_markdown(text: Any, *, redact: bool = False, max_chars: int | None = 300) -> str:
    """`text` made safe inside Markdown (and a table cell): HTML is escaped (`<` -> `&lt;`), Markdown characters
    (`|`, backticks, `*`, `_`, `[`, `]`, `!`, ...) get a backslash, newlines become spaces; longer texts are cut to
    `max_chars` with an ellipsis. `redact=True` masks slurs and profanity first."""
    s = "" if text is None else str(text)
    if redact:
        s = redact_text(s)
    s = re.sub(r"\s+", " ", s).strip()
    if max_chars is not None and len(s) > max_chars:
        s = s[: max_chars - 1].rstrip() + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)
