"""`model.explain(x)`: the prediction for one text or image, and the features that made it.

Example:
    >>> exp = model.explain("a gorgeous, witty film")
    >>> print(exp)
    prediction: positive (p=0.97)
    ...
    >>> exp.contributions[0]            # the largest push towards the predicted class
    Contribution(feature=17, value=2.31, weight=0.91, contribution=2.10, description='words: witty, ...')
    >>> html = exp.to_html()
"""

from __future__ import annotations

import html as html_lib
from dataclasses import asdict, dataclass, field

import torch

from ..tables import fmt, text_table
from ..text_safety import visible_text
from .class_features import label_name


@dataclass
class Contribution:
    """One active feature's part in the predicted class's logit: `value` (the feature) times `weight`."""

    feature: int
    value: float
    weight: float
    contribution: float
    description: str = ""


@dataclass
class Explanation:
    """Prediction, probabilities, and every active feature's contribution to the predicted class's logit."""

    input: str
    prediction: str
    prediction_id: int
    probabilities: dict[str, float]
    bias: float
    logit: float
    contributions: list[Contribution] = field(default_factory=list)
    family: str = "multinomial"
    #: Set when the feature descriptions were computed for another encoder (trained further since): read the
    #: "what drives it" column with care, or run `model.describe_features()` again.
    descriptions_note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        probs = ", ".join(f"{visible_text(k)} {v:.3f}" for k, v in self.probabilities.items())
        shown = visible_text(self.prediction)  # no invisible or direction-changing characters reach a terminal
        rows = [[c.feature, f"{c.value:.3f}", f"{c.weight:.3f}", f"{c.contribution:+.3f}",
                 visible_text(c.description)] for c in self.contributions]
        return "\n".join([
            f"input: {visible_text(self.input)}",
            f"prediction: {shown} (p={self.probabilities.get(self.prediction, float('nan')):.3f})",
            f"probabilities: {probs}",
            f"logit of {shown} = {self.logit:+.3f} = bias {self.bias:+.3f} + the contributions below",
            text_table(*_right_aligned(["feature", "value", "weight", "contrib", "what drives it"], rows, 4)),
        ] + ([f"note: {self.descriptions_note}"] if self.descriptions_note else []))

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self) -> str:
        """A self-contained HTML fragment: the prediction, a probability table and a contribution table with bars.
        Text is HTML-escaped, and invisible or direction-changing characters are shown as ``⟨U+XXXX⟩``."""

        def esc(text) -> str:
            return html_lib.escape(visible_text(text))

        scale = max([abs(c.contribution) for c in self.contributions] + [1e-12])
        rows = []
        for c in self.contributions:
            width = int(100 * abs(c.contribution) / scale)
            colour = "#2b8a3e" if c.contribution >= 0 else "#c92a2a"
            rows.append(
                f"<tr><td>{c.feature}</td><td>{c.value:.3f}</td><td>{c.weight:.3f}</td>"
                f"<td>{c.contribution:+.3f}</td><td><div style='background:{colour};width:{width}px;height:10px'></div></td>"
                f"<td>{esc(c.description)}</td></tr>"
            )
        probs = "".join(f"<tr><td>{esc(k)}</td><td>{v:.3f}</td></tr>" for k, v in self.probabilities.items())
        return (
            "<div class='hf-sparse-explanation'>"
            f"<p><b>Input:</b> {esc(self.input)}</p>"
            f"<p><b>Prediction:</b> {esc(self.prediction)}</p>"
            f"<table><tr><th>label</th><th>probability</th></tr>{probs}</table>"
            f"<p>Logit of {esc(self.prediction)} = {self.logit:+.3f}: bias {self.bias:+.3f} plus</p>"
            "<table><tr><th>feature</th><th>value</th><th>weight</th><th>contribution</th><th></th>"
            f"<th>what drives it</th></tr>{''.join(rows)}</table>"
            + (f"<p><b>Note:</b> {esc(self.descriptions_note)}</p>" if self.descriptions_note else "")
            + "</div>"
        )


def _right_aligned(headers: list[str], rows: list[list], n: int) -> tuple[list[str], list[list[str]]]:
    """`headers` and `rows` with the first `n` columns (numbers) padded on the left to one width, so that
    `text_table` lines their digits up.

    Example:
        >>> _right_aligned(["feature", "value"], [[3, "12.500"], [1203, "-0.200"]], 1)
        (['feature', 'value'], [['      3', '12.500'], ['   1203', '-0.200']])
    """
    cells = [[fmt(c) for c in row] for row in rows]
    for i in range(n):
        width = max([len(headers[i])] + [len(row[i]) for row in cells])
        headers = headers[:i] + [headers[i].rjust(width)] + headers[i + 1:]
        for row in cells:
            row[i] = row[i].rjust(width)
    return headers, cells


def probabilities_from_logits(logits: torch.Tensor, family: str) -> torch.Tensor:
    """Softmax (multinomial), independent sigmoids (multilabel), or the values themselves (gaussian)."""
    if family == "multilabel":
        return torch.sigmoid(logits)
    if family == "gaussian":
        return logits
    return torch.softmax(logits, -1)


@torch.no_grad()
def explain(model, inputs, *, target: int | str | None = None):
    """Explain one input (a `str`, or a PIL image for image models), or a list of them (a list of Explanations).

    `target`: the class to explain (id or name); default the predicted class.
    """
    from ..modeling.encode import as_batch_list

    items = as_batch_list(inputs)
    features = model.encode(items)
    head = model.sparse_head
    logits = head(features.to(head.values)).float().cpu()
    family = model.config.family or "multinomial"
    probs = probabilities_from_logits(logits, family)
    weight, bias = head.weight.float().cpu(), head.bias.float().cpu()
    descriptions = model.feature_descriptions or {}
    note = None
    if getattr(descriptions, "stale", False):
        note = ("the feature descriptions ('what drives it') were computed for a different encoder: "
                f"{getattr(descriptions, 'stale_reason', None) or 'it changed since'}; run model.describe_features() "
                "again")
    out = []
    for n, item in enumerate(items):
        c = int(logits[n].argmax()) if target is None else _target_id(model.config, target)
        cols = torch.nonzero(weight[c]).flatten()
        values = features[n, cols].float()
        contrib = values * weight[c, cols]
        order = torch.argsort(contrib.abs(), descending=True)
        rows = [
            Contribution(int(cols[i]), float(values[i]), float(weight[c, cols[i]]), float(contrib[i]),
                         descriptions[int(cols[i])].summary if int(cols[i]) in descriptions else "")
            for i in order.tolist()
        ]
        shown = item if isinstance(item, str) else f"<image {getattr(item, 'size', '')}>"
        out.append(Explanation(
            input=shown, prediction=label_name(model.config, c), prediction_id=c,
            probabilities={label_name(model.config, k): float(p) for k, p in enumerate(probs[n])},
            bias=float(bias[c]), logit=float(logits[n, c]), contributions=rows, family=family,
            descriptions_note=note,
        ))
    single = isinstance(inputs, str) or hasattr(inputs, "convert")
    return out[0] if single else out


def _target_id(config, target) -> int:
    if isinstance(target, str):
        label2id = {str(k): int(v) for k, v in (config.label2id or {}).items()}
        if target not in label2id:
            raise ValueError(f"unknown label {target!r}; this model's labels are {sorted(label2id)}")
        return label2id[target]
    if not 0 <= int(target) < config.num_labels:
        raise ValueError(f"target must be a class id in 0..{config.num_labels - 1}, got {target}")
    return int(target)
