"""The one table renderer: plain-text tables (terminal, `str(report)`) and Markdown tables (model cards, reports).

Cells are formatted by `fmt` (None and NaN as "–", floats to 3 decimals, booleans as yes/no, lists and dicts
joined). Markdown cells are escaped with `hf_sparse.text_safety.escape_markdown`, since dataset text is untrusted;
a cell already written as Markdown (escaped by its maker, e.g. with `<br>` between quotes) is wrapped in
`Markdown(...)` and passes through as it is. This module imports nothing outside `hf_sparse.text_safety`, so every
layer may use it.

Example:
    >>> print(text_table(["metric", "value"], [["accuracy", 0.91234], ["loss", None]]))
    metric    value
    --------  -----
    accuracy  0.912
    loss      –
    >>> markdown_table(["word", "n"], [["a|b", 2]], align=["left", "right"])
    '| word | n |\\n| --- | ---: |\\n| a\\\\|b | 2 |'
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .text_safety import escape_markdown

MISSING = "–"
_RULES = {"left": "---", "right": "---:", "center": ":---:"}


class Markdown(str):
    """A table cell that is already Markdown (its maker escaped the untrusted parts): `markdown_table` keeps it.

    Example:
        >>> markdown_table(["examples"], [[Markdown("“a”<br>“b”")]])
        '| examples |\\n| --- |\\n| “a”<br>“b” |'
    """


def fmt(value: Any, digits: int = 3) -> str:
    """One cell as text: None / NaN / inf -> "–", floats to `digits` decimals, booleans yes/no, lists and dicts
    joined with ", ".

    Example:
        >>> fmt(0.5), fmt(None), fmt(True), fmt({"a": 1.0}), fmt([1, 2])
        ('0.500', '–', 'yes', 'a: 1.000', '1, 2')
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING
        return f"{value:.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def _check(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"table row {i} has {len(row)} cells but there are {len(headers)} headers "
                             f"({list(headers)}): give one cell per column")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart, a rule of dashes under the headers.

    Example:
        >>> text_table(["a", "bb"], [[1, 0.5]])
        'a  bb\\n-  -----\\n1  0.500'
    """
    _check(headers, rows)
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row):
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, redact: bool = False,
                   align: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table; every cell escaped (and, with `redact=True`, slurs masked) unless it is `Markdown`.
    `align`: "left" (default), "right" or "center" per column.

    Example:
        >>> markdown_table(["feature", "weight"], [[3, "+0.5"]], align=["right", "right"])
        '| feature | weight |\\n| ---: | ---: |\\n| 3 | +0.5 |'
    """
    _check(headers, rows)
    align = list(align) if align is not None else ["left"] * len(headers)
    if len(align) != len(headers) or any(a not in _RULES for a in align):
        raise ValueError(f"align must give one of {sorted(_RULES)} per column ({len(headers)} columns); got {align}")

    def cell(value) -> str:
        if isinstance(value, Markdown):
            return str(value)
        return escape_markdown(fmt(value), redact=redact)

    head = "| " + " | ".join(cell(h) for h in headers) + " |"
    rule = "| " + " | ".join(_RULES[a] for a in align) + " |"
    body = ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule] + body)
