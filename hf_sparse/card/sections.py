"""The card's prose sections, written from the model's config: the base-model and training-data lines, which data
the Results were measured on, how the head was selected, the edits made to it, and the Limitations (one line per
recorded audit, and the feature-health warnings of the last fit).

Example:
    >>> _selection_text({"method": "features_per_class", "value": 5})
    'exactly 5 features per class'
    >>> _limitations(model, n_eval=872)[-1]      # no audit recorded yet
    'No audit is recorded in this card: ...'
"""

from __future__ import annotations

import json

from ..text_safety import escape_markdown
from .model_index import _base


#: The limitation each recorded audit brings (keys of `model.audit_reports`); edits need none.
AUDIT_LIMITATIONS = {
    "identity": "The identity-term audit uses the project's templates and term lists, which cover some groups and "
                "phrasings and not others.",
    "subgroup": "The subgroup audit measures the groups it was given, on the data it was given; groups it did not "
                "name are not checked.",
    "error_slices": "The error slices were found on the data the audit ran on: they show where this head fails "
                    "there, not every place it fails.",
}


def _limitations(model, n_eval) -> list[str]:
    """The Limitations lines: features, data, and one line per audit the card contains (or that there is none)."""
    config = model.config
    dense = config.dense_metrics or {}
    lines = [f"A feature is a direction the encoder computes; its description (words, examples, regions) is read "
             f"from {n_eval} examples and is a summary, not a definition. Check the examples before drawing "
             "conclusions.",
             "The sparse head is as good as the encoder's features on the data it was fit on; accuracy can differ "
             "on other data."
             + (" The dense head's accuracy above is the reference on the same examples." if dense.get("accuracy")
                is not None else "")]
    reports = model.audit_reports or {}
    audits = [AUDIT_LIMITATIONS[k] for k in reports if k in AUDIT_LIMITATIONS]
    if audits:
        lines += audits
    elif not [k for k in reports if k != "edits"]:
        lines.append("No audit is recorded in this card: it does not test the model for biases or shortcuts "
                     "(`hf-sparse audit` runs them and adds their results here).")
    return lines + _feature_health(config)


def _feature_health(config) -> list[str]:
    """Limitation lines from the collapse check of the last fit (`config.feature_health`)."""
    health = getattr(config, "feature_health", None) or {}
    lines = []
    if health.get("collapsed"):
        lines.append(f"The cached features are nearly rank one (the top direction holds "
                     f"{health.get('top_direction_share', 0):.0%} of their variance): the features describe one "
                     "direction, so their descriptions overlap and edits cannot separate them. A head on the "
                     "pretrained encoder, another layer, or a lighter fine-tune gives more distinct features.")
    for group in health.get("near_duplicate_features") or []:
        lines.append(f"Features {', '.join(map(str, group))} are near duplicates (correlation above 0.95): read "
                     "them as one.")
    return lines


def _edit_lines(config):
    lines = []
    for edit in getattr(config, "edits", None) or []:
        parts = []
        if edit.get("fix"):
            parts.append(f"fix: {escape_markdown(edit['fix'])} ({escape_markdown(edit.get('description') or '')})")
            wb, wa = edit.get("worst_group_accuracy_before"), edit.get("worst_group_accuracy_after")
            if wb is not None and wa is not None:
                parts.append(f"worst-group accuracy {wb:.2%} → {wa:.2%}")
        for key in ("added", "removed", "reweighted", "refit"):
            if edit.get(key):
                parts.append(f"{key}: {escape_markdown(edit[key])}")
        before, after = edit.get("accuracy_before"), edit.get("accuracy_after")
        if before is not None and after is not None:
            parts.append(f"accuracy {before:.2%} → {after:.2%}")
        lines.append("; ".join(parts) or escape_markdown(edit))
    return lines


def _split_text(config, card_data) -> str:
    """Which data the Results figures (and the installed head's point in the path plot) were measured on."""
    sparse, dense = config.sparse_metrics or {}, config.dense_metrics or {}
    split = sparse.get("split") or dense.get("split")
    n = sparse.get("n_examples", dense.get("n_examples"))
    if split == "eval":
        text = f"the evaluation data given to the fit (`eval_dataset`, {n} examples"
        if card_data.eval_split:
            text += f": the `{escape_markdown(card_data.eval_split)}` split"
            if card_data.datasets:
                text += f" of {escape_markdown(card_data.datasets[0])}"
        return text + ")"
    if split == "train":
        return f"the training data ({n} examples): the fit had no evaluation data, so these figures are optimistic"
    return "n/a"


def _hub_link(repo_id: str, kind: str = "") -> str:
    return f"[{escape_markdown(repo_id)}](https://huggingface.co/{kind}{repo_id})"


def _base_text(config, card_data) -> tuple[str, str, str]:
    """(title name, the intro's name of the base model, the "base model" row): a Hub id is linked; a local folder is
    named by its folder name alone (never its path), with the Hub model it was made from when the card data says."""
    hub, name = _base(config)
    if hub is not None:
        shown = f"**{_hub_link(hub)}**"
        row = _hub_link(hub)
    elif config.base_model_name_or_path:
        shown = f"**{escape_markdown(name)}** (a local folder, not on the Hub)"
        row = f"`{escape_markdown(name)}` (a local folder, not on the Hub)"
    else:
        shown, row = "A transformers classifier", "n/a"
    made_from = card_data.base_model
    if made_from and made_from != hub:
        shown += f", made from {_hub_link(made_from)},"
        row += f", made from {_hub_link(made_from)}"
    return name.split("/")[-1], shown, row


def _training_text(card_data, config) -> str:
    size = card_data.train_size
    if size is None:
        return "n/a"
    text = f"{size:,}"
    augmented = ((config.selection or {}).get("training") or {}).get("augmented_examples")
    counts = card_data.label_counts
    if augmented:
        text += f", {augmented:,} of them counterfactual copies"
    if counts:
        text += (" (" + ("original examples: " if augmented else "")
                 + ", ".join(f"{escape_markdown(str(k))}: {v:,}" for k, v in counts.items()) + ")")
    if card_data.datasets:
        text += " from " + ", ".join(_hub_link(d, "datasets/") for d in card_data.datasets)
    return text


def _example_input(config, card_data) -> str:
    if config.modality == "image":
        return 'Image.open("example.jpg")'
    for item in card_data.widget or []:
        if item.get("text"):
            return json.dumps(item["text"], ensure_ascii=True)
    return '"a gorgeous, witty film"'


def _selection_text(selection) -> str:
    if not selection:
        return "not fitted yet (the sparse layer holds the dense weights)"
    method, value = selection.get("method"), selection.get("value")
    text = {"features_per_class": f"exactly {value} features per class", "max_accuracy_drop":
            f"sparsest point within {value} of the best validation accuracy", "lam": f"lambda = {value}"}.get(method, str(method))
    relax = selection.get("relax_gain") or {}
    if relax.get("kept"):
        text += (f", then refit on that support with a light ridge penalty (relaxed refit: "
                 f"{relax.get('metric', 'accuracy').replace('_', ' ')} {relax.get('gain', 0):+.2%})")
    elif relax:
        text += ", relaxed refit tried and not kept"
    return text
