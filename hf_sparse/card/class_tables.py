"""The card's per-class feature tables: each feature's weight, share, driving words and example snippets (or the
image grids of image models), and `binary_mirror`, which folds a mirrored two-class head into one table.

Example:
    >>> rows = _class_rows(model, class_features(model), model.feature_descriptions, False, 2)
    >>> print(rows[0]["markdown"])        # | feature | weight | share | what drives it | most activating examples |
"""

from __future__ import annotations

import re

from ..tables import Markdown, markdown_table
from ..text_safety import escape_markdown, excerpt


#: Example texts in the card's feature tables are cut to this many characters, around the feature's top word.
SNIPPET_CHARS = 90


def _snippet(text: str, words, redact: bool, width: int = SNIPPET_CHARS) -> str:
    """`text` cut to `width` characters around the first of `words` (a feature's top words, best first) that it
    holds as a whole word, so the word that drives the feature is never cut away; then escaped (and redacted).
    The cut is made before redaction, so a masked top word still centres the window.

    Example:
        >>> _snippet("so " * 60 + "utterly dull", ["dull"], redact=False, width=20)
        '…so so utterly dull'
    """
    text = " ".join(str(text).split())
    around = next((w for w in words if w and re.search(r"(?<!\w)" + re.escape(str(w)) + r"(?!\w)", text, re.I)), None)
    return escape_markdown(excerpt(text, around=around, width=width), redact=redact, max_chars=None)


def _class_rows(model, tables, descriptions, redact_text, n_snippets, images=True):
    out = []
    for table in tables:
        rows, grids = [], []
        for f in table.features:
            d = descriptions.get(f.feature) if descriptions else None
            drivers = examples = ""
            if d is not None:
                drivers = ", ".join(escape_markdown(w, redact=redact_text, max_chars=30) for w, _, _ in d.top_words[:6])
                texts = [e.text for e in d.top_examples[:n_snippets] if e.text]
                words = [w for w, _, _ in d.top_words]
                examples = "<br>".join("“" + _snippet(t, words, redact_text) + "”" for t in texts)
                pictures = [e.image for e in d.top_examples if e.image]
                if pictures and images:
                    heat = [e.heatmap for e in d.top_examples if e.heatmap]
                    bottom = [e.image for e in d.bottom_examples if e.image]
                    grids.append({"feature": f.feature, "images": pictures, "heatmaps": heat, "bottom": bottom})
                    examples = f"{len(pictures)} images below"
            rows.append({"feature": f.feature, "weight": f"{f.weight:+.3f}", "drivers": drivers or "–",
                         "share": "n/a" if f.share is None else f"{f.share:.0%}", "examples": examples or "–"})
        markdown = markdown_table(
            ["feature", "weight", "share", "what drives it", "most activating examples"],
            [[r["feature"], r["weight"], r["share"], Markdown(r["drivers"]), Markdown(r["examples"])] for r in rows],
            align=["right", "right", "right", "left", "left"])
        out.append({"label": escape_markdown(table.label), "bias": f"{table.bias:+.3f}", "rows": rows, "grids": grids,
                    "markdown": markdown})
    return out


def binary_mirror(model) -> bool:
    """True for a two-class softmax head whose two classes are sign-flipped copies (W[0] = -W[1], b[0] = -b[1]):
    only the difference of the two logits counts, so one table (class 1's weights) says everything.

    Example:
        >>> binary_mirror(model)      # a fitted two-class model
        True
    """
    import torch

    head = model.sparse_head
    if model.config.family != "multinomial" or head.out_features != 2:
        return False
    W = head.weight.detach().double().cpu()
    bias = getattr(head, "bias", None)
    b = torch.zeros(2, dtype=torch.float64) if bias is None else bias.detach().double().cpu()
    scale = float(W.abs().max()) or 1.0
    return bool(torch.allclose(W[0], -W[1], rtol=1e-4, atol=1e-6 * scale)
                and torch.allclose(b[0], -b[1], rtol=1e-4, atol=1e-6 * max(scale, float(b.abs().max()))))
