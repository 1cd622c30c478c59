"""The model card of a sparse-head model: `huggingface_hub.ModelCard` rendered from `model_card_template.md`.

Everything comes from the model itself (config, head, feature descriptions, recorded audits) and its card data
(`model.model_card_data`, a `SparseModelCardData` kept in the config): no network. The figures are the head's as
installed now (features per class after any edit; sparse metrics measured before an edit are not shown as this
model's), the sparse head is the model-index result and the dense head a labelled baseline. Pictures
are written as files beside the card (`card_assets/`, `feature_images/`) and linked by relative path. An existing
README.md is updated in place: only the part between the hf_sparse markers is replaced, the user's other text is
kept, and the metadata is merged (the user's keys kept, hf_sparse's updated).

Example:
    >>> card = create_model_card(model, card_data={"license": "mit"})   # a ModelCard (text only)
    >>> write_model_card(model, "out")                  # README.md + card_assets/*.png
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from ..tables import Markdown, markdown_table
from ..text_safety import escape_markdown, excerpt
from .card_data import PIPELINE_TAGS, SparseModelCardData, check_repo_id, framework_versions, is_hub_id

ASSETS_DIR = "card_assets"
BEGIN, END = "<!-- hf_sparse:begin", "<!-- hf_sparse:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)


def _template() -> str:
    return resources.files("hf_sparse.card").joinpath("model_card_template.md").read_text(encoding="utf-8")


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2%}" if pct else f"{value:.4g}"
    return escape_markdown(str(value))


#: Metrics the model-index reports (when the fit measured them), in this order.
INDEX_METRICS = ("accuracy", "exact_match", "mse", "r2")
#: The model-index name of a dense-head figure: never this model's result.
DENSE_BASELINE = "{metric} (dense baseline head, not this model)"


def _base(config) -> tuple[str | None, str]:
    """(the base classifier's Hub id or None, the name to show): a local folder is shown by its name alone."""
    base = config.base_model_name_or_path
    if not base:
        return None, "a transformers classifier"
    if is_hub_id(base):
        return base, base
    return None, os.path.basename(str(base).rstrip("/\\")) or str(base)


def sparse_metrics_stale(model) -> bool:
    """True when `config.sparse_metrics` were measured on another head than the one installed now (an edit after
    them that did not measure the same split again): the card then prints none of them as this model's.

    Example:
        >>> sparse_metrics_stale(model)
        False
    """
    config = model.config
    sparse = config.sparse_metrics or {}
    if not sparse:
        return False
    if sparse.get("nnz") is not None and int(sparse["nnz"]) != int(model.sparse_head.nnz):
        return True
    return bool(config.edits) and not sparse.get("edited")


def card_data_for(model, *, card_data=None, repo_id: str | None = None, dataset_name: str | None = None,
                  pipeline_tag: str | None = None) -> SparseModelCardData:
    """The card's `SparseModelCardData`: the user's fields (`model.config.card_data`, then `card_data` over them,
    then `repo_id` as `model_id`) and the fields filled from the model: pipeline tag, framework versions, training
    size and label counts, and the model-index (the sparse head's metrics as this model's results, then the dense
    head's as a labelled baseline).

    Example:
        >>> card_data_for(model, card_data={"license": "mit"}).to_yaml()
    """
    config = model.config
    data = SparseModelCardData.from_user_fields(getattr(config, "card_data", None)).merged(card_data)
    if repo_id is not None:
        data.model_id = repo_id
    hub_base, _ = _base(config)
    if data.base_model is None and hub_base is not None:
        data.base_model = hub_base
    if data.datasets is None and dataset_name and is_hub_id(dataset_name):
        data.datasets = [dataset_name]
    pipeline_tag = pipeline_tag or PIPELINE_TAGS.get(config.modality, "text-classification")
    data.pipeline_tag = pipeline_tag
    data.framework_versions = framework_versions()
    std = config.standardization or {}
    data.train_size = std.get("n_train")
    data.label_counts = std.get("label_counts")
    dense, sparse = config.dense_metrics or {}, config.sparse_metrics or {}
    data.metrics = [m for m in INDEX_METRICS if m in sparse or m in dense] or None
    dataset = data.datasets[0] if data.datasets else dataset_name
    if dataset and config.is_fitted:
        from huggingface_hub import EvalResult

        split = data.eval_split or sparse.get("split")
        common = dict(task_type=pipeline_tag, dataset_type=dataset, dataset_name=dataset, dataset_split=split)
        results = []
        if not sparse_metrics_stale(model):
            results += [EvalResult(metric_type=m, metric_value=sparse[m], metric_name=m, **common)
                        for m in INDEX_METRICS if sparse.get(m) is not None]
        summary = model.head_summary()
        results.append(EvalResult(metric_type="features_per_class", metric_value=summary["mean_features_per_class"],
                                  metric_name="features per class", **common))
        results += [EvalResult(metric_type=m, metric_value=dense[m], metric_name=DENSE_BASELINE.format(metric=m),
                               **common) for m in INDEX_METRICS if dense.get(m) is not None]
        data.eval_results = results
        object.__setattr__(data, "_index_name", f"{_base(config)[1].split('/')[-1]}-sparse-head")
    return data


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


def _results_table(metric_names, dense: dict, sparse: dict, summary: dict, stale: bool) -> str:
    """The Results table: the sparse head (this model) first, then the dense head it replaced (a baseline); each
    metric, features per class and features used. The sparse figures come from the head installed now
    (`head_summary`), never from the fit's record, which an edit makes stale."""
    def values(metrics):
        return [Markdown(_fmt(metrics.get(m), pct=m in ("accuracy", "exact_match"))) for m in metric_names]

    mean_features = f"{summary['mean_features_per_class']:.3g}"
    if stale:
        sparse_row = ["sparse (this model; measured before its last edit, not shown)"] + [Markdown("n/a")] * len(
            metric_names)
    else:
        sparse_row = ["sparse (this model)"] + values(sparse)
    rows = [sparse_row + [mean_features, summary["n_features"]]]
    if any(dense.get(m) is not None for m in metric_names):
        rows.append(["dense (the original head: a baseline, not this model)"] + values(dense)
                    + [summary["num_features"], summary["num_features"]])
    return markdown_table(["head"] + [Markdown(m) for m in metric_names] + ["features per class", "features used"],
                          rows, align=["left"] + ["right"] * (len(metric_names) + 2))


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


def path_plot_data(model) -> dict | None:
    """What the path picture draws, as plain numbers (None without a path summary): the recorded path points
    (lambda, mean and max features per class, train and evaluation accuracy), the dense head's accuracy, the
    installed head (`installed`: the lambda of the path point it came from, its accuracy and split exactly as the
    Results table shows them, its features per class now, after any refit or edit), and `note` when the fit stopped
    the path at its features-per-class target (the denser points were never fitted).

    Example:
        >>> data = path_plot_data(model); data["installed"]["accuracy"] == model.config.sparse_metrics["accuracy"]
        True
    """
    config = model.config
    rows = config.path_summary or []
    if not rows:
        return None
    selection = config.selection or {}
    sparse, dense = config.sparse_metrics or {}, config.dense_metrics or {}
    split = sparse.get("split")
    index = selection.get("index")
    lam = rows[index]["lambda"] if isinstance(index, int) and 0 <= index < len(rows) else selection.get(
        "lam", config.selected_lambda)
    stale = sparse_metrics_stale(model)
    accuracy = None if stale else sparse.get("accuracy")
    steps = []
    if selection.get("refit"):
        steps.append(f"refit on its top {selection.get('features_per_class', selection.get('value'))} per class")
    if (selection.get("relax_gain") or {}).get("kept"):
        steps.append("relaxed refit")
    if config.edits:
        steps.append("edited")
    shown = "n/a" if accuracy is None else f"{accuracy:.2%}"
    label = f"{shown} {split or ''} accuracy" + (f" ({', '.join(steps)})" if steps else "")
    note = short_note = None
    target = selection.get("value")
    if (selection.get("method") == "features_per_class" and index == len(rows) - 1 and target is not None
            and (rows[-1].get("features_per_class") or 0) >= target):  # `fit_path(stop_at_features_per_class=)`
        note = (f"the fit stopped the path at the first point with {target} features in every class: denser points "
                "were not fitted")
        short_note = f"path stopped at the target of {target} features per class; denser points not fitted"
    dense_accuracy = dense.get("accuracy")
    return {
        "lambdas": [r["lambda"] for r in rows],
        "features_mean": [r["features_per_class"] for r in rows],
        "features_max": [r.get("max_features_per_class") for r in rows],
        "train_accuracy": [r.get("train_accuracy") for r in rows],
        "val_accuracy": [r.get("val_accuracy") for r in rows],
        "val_label": f"{split} accuracy" if split == "eval" else "validation accuracy",
        "dense_accuracy": dense_accuracy,
        "dense_label": None if dense_accuracy is None else (
            f"dense head (baseline): {dense_accuracy:.2%} {split} accuracy"),
        "split": split,
        "installed": {"lambda": lam, "accuracy": accuracy, "split": split,
                      "features_per_class": model.head_summary()["mean_features_per_class"],
                      "label": f"installed head: {label}", "text": label},
        "note": note,
        "plot_note": short_note,
    }


def _assets(model, tables, titles=None):
    """Figures to write: {relative file name: matplotlib figure}."""
    from .plots import plot_class_features, plot_path_data

    figures = {}
    data = path_plot_data(model)
    if data is not None:
        figures[f"{ASSETS_DIR}/path.png"] = plot_path_data(data)
    if any(t.features for t in tables):
        figures[f"{ASSETS_DIR}/class_weights.png"] = plot_class_features(tables, titles=titles)
    return figures


def _audit_sections(model, redact_text, images=True):
    reports = model.audit_reports or {}
    return [report.to_markdown(ASSETS_DIR if images else None, redact=redact_text) for report in reports.values()]


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


def render_model_card(model, *, repo_id: str | None = None, dataset_name: str | None = None, card_data=None,
                      redact: bool = False, content_warning: bool | None = None, n_snippets: int = 2,
                      images: bool = True):
    """`(card_text, figures)`: the Markdown of the card and the figures it links ({relative path: figure}).

    `card_data` (a `SparseModelCardData` or a dict of its fields) is laid over the model's own
    (`model.model_card_data`, saved in its config) for this card only; `repo_id` is this model's Hub repo id
    (``owner/name``, the `model_id` field): the usage example loads it. `dataset_name` names the data in the
    model-index when no Hub dataset id is set. `redact` masks slurs in quoted examples (and adds a content warning);
    `images=False` leaves every picture out.

    Example:
        >>> text, figures = render_model_card(model, card_data={"license": "mit"}, images=False)
    """
    from jinja2 import Environment

    check_repo_id(repo_id)

    from ..explain.class_features import class_features, label_name

    config = model.config
    data = card_data_for(model, card_data=card_data, repo_id=repo_id, dataset_name=dataset_name)
    summary = model.head_summary()
    tables = class_features(model)
    mirror = binary_mirror(model)
    if mirror:
        tables = tables[1:]
    other = label_name(config, 0)
    raw_descriptions = model.feature_descriptions
    stale_descriptions = bool(getattr(raw_descriptions, "stale", False))
    stale_reason = escape_markdown(str(getattr(raw_descriptions, "stale_reason", "") or ""))
    descriptions = raw_descriptions or {}
    titles = [f"weight > 0 pushes towards class '{tables[0].label}', weight < 0 towards class '{other}'"] if mirror else None
    figures = _assets(model, tables, titles) if images else {}
    dense, sparse = config.dense_metrics or {}, config.sparse_metrics or {}
    stale = sparse_metrics_stale(model)
    metric_names = [m for m in ("accuracy", "loss", "exact_match", "mse", "r2") if m in sparse or m in dense]
    n_eval = sparse.get("n_examples", dense.get("n_examples", "n/a"))
    content_warning = redact if content_warning is None else content_warning
    name, base_name, base_row = _base_text(config, data)
    hub_id = data.model_id
    plot = path_plot_data(model) if f"{ASSETS_DIR}/path.png" in figures else None
    context = dict(
        card_data=data.to_yaml(),
        title=escape_markdown(data.model_name or f"{name} with a sparse linear head"),
        base_name=base_name, base_model=base_row,
        mean_features=f"{summary['mean_features_per_class']:.3g}", n_features=summary["n_features"],
        num_features=summary["num_features"], feature_source=escape_markdown(config.feature_source or "n/a"),
        family=config.family, alpha=_fmt(config.alpha),
        selected_lambda=_fmt((config.selection or {}).get("lam", config.selected_lambda)),
        selection=escape_markdown(_selection_text(config.selection))
        + ("; the head was edited after the fit (see *Edits to the head*)" if config.edits else ""),
        training=_training_text(data, config), metrics_split=_split_text(config, data), n_eval=n_eval,
        n_path_points=len(config.path_summary or []), path_note=escape_markdown((plot or {}).get("note") or ""),
        pipeline_tag=data.pipeline_tag, model_ref=json.dumps(hub_id) if hub_id else "model_dir", hub_id=hub_id,
        model_class=type(model).__name__, example_input=_example_input(config, data),
        results_table=_results_table(metric_names, dense, sparse, summary, stale),
        installed=plot["installed"]["text"] if plot else None,
        path_plot=f"{ASSETS_DIR}/path.png" if plot else None,
        weights_plot=f"{ASSETS_DIR}/class_weights.png" if f"{ASSETS_DIR}/class_weights.png" in figures else None,
        classes=_class_rows(model, tables, descriptions, redact, n_snippets, images),
        mirror=mirror, other_label=escape_markdown(other),
        stale_descriptions=stale_descriptions,
        stale_reason=stale_reason,
        edits=_edit_lines(config), audits=_audit_sections(model, redact), limitations=_limitations(model, n_eval),
        versions=data.framework_versions, content_warning=content_warning, redacted=redact,
    )
    env = Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.from_string(_template()).render(**context), figures


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


def create_model_card(model, **kwargs):
    """The `huggingface_hub.ModelCard` of `model` (see `render_model_card` for the options); no files written."""
    from huggingface_hub import ModelCard

    text, figures = render_model_card(model, **kwargs)
    _close(figures)
    return ModelCard(text)


def merge_card(existing: str, generated: str) -> str:
    """Replace the hf_sparse block of `existing` with `generated`'s, keep the rest; merge the YAML metadata."""
    from huggingface_hub import ModelCard, ModelCardData

    old, new = ModelCard(existing), ModelCard(generated)
    data = old.data.to_dict()
    data.update({k: v for k, v in new.data.to_dict().items() if v is not None})
    block = _BLOCK.search(new.text).group(0)
    body = _BLOCK.sub(lambda _: block, old.text, count=1) if _BLOCK.search(old.text) else old.text.rstrip() + "\n\n" + block
    return f"---\n{ModelCardData(**data).to_yaml()}\n---\n{body}"


def write_model_card(model, directory: str | os.PathLike, *, dpi: int = 110, **kwargs) -> list[str]:
    """Write README.md and its figures into `directory` (updating an existing card in place); returns the
    relative names of the files written."""
    from ..plotting import save

    directory = Path(directory)
    text, figures = render_model_card(model, **kwargs)
    written = []
    for name, fig in figures.items():
        save(fig, (directory / name).parent, Path(name).name, dpi=dpi, tight=False)
        written.append(name)
    reports = (model.audit_reports or {}) if kwargs.get("images", True) else {}
    for report in reports.values():
        written += [f"{ASSETS_DIR}/{name}" for name in report.save_plots(directory / ASSETS_DIR)]
    readme = directory / "README.md"
    if readme.is_file():
        text = merge_card(readme.read_text(encoding="utf-8"), text)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
    return ["README.md"] + written


def _close(figures) -> None:
    from ..plotting import close

    close(figures)
