"""The model card of a sparse-head model: `huggingface_hub.ModelCard` rendered from `model_card_template.md`.

Everything comes from the model itself (config, head, feature descriptions, recorded audits): no network. Pictures
are written as files beside the card (`card_assets/`, `feature_images/`) and linked by relative path. An existing
README.md is updated in place: only the part between the hf_sparse markers is replaced, the user's other text is
kept, and the metadata is merged (the user's keys kept, hf_sparse's updated).

Example:
    >>> card = create_model_card(model)                 # a ModelCard (text only)
    >>> write_model_card(model, "out")                  # README.md + card_assets/*.png
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from ..tables import Markdown, markdown_table
from ..text_safety import escape_markdown, excerpt, visible_text

ASSETS_DIR = "card_assets"
BEGIN, END = "<!-- hf_sparse:begin", "<!-- hf_sparse:end -->"
PIPELINE_TAGS = {"text": "text-classification", "image": "image-classification"}
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)


def _template() -> str:
    return resources.files("hf_sparse.card").joinpath("model_card_template.md").read_text(encoding="utf-8")


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2%}" if pct else f"{value:.4g}"
    return escape_markdown(str(value))


def _card_data(model, repo_id, dataset_name, pipeline_tag):
    from huggingface_hub import EvalResult, ModelCardData

    config = model.config
    base = config.base_model_name_or_path
    hub_base = base if base and not os.path.isdir(base) and not os.path.isabs(base) else None
    dataset_name = dataset_name or getattr(config, "dataset_name", None)
    results = []
    for head, metrics in (("dense head", config.dense_metrics or {}), ("sparse head", config.sparse_metrics or {})):
        if metrics.get("accuracy") is not None and dataset_name:
            results.append(EvalResult(
                task_type=pipeline_tag, dataset_type=dataset_name, dataset_name=dataset_name,
                dataset_split=metrics.get("split"), metric_type="accuracy", metric_value=metrics["accuracy"],
                metric_name=f"accuracy ({head}, {metrics.get('features_per_class', 0):.3g} features per class)",
            ))
    return ModelCardData(
        library_name="hf_sparse",
        pipeline_tag=pipeline_tag,
        base_model=hub_base,
        datasets=[dataset_name] if dataset_name else None,
        tags=["hf_sparse", "sparse-linear-head", "interpretability", "transformers"],
        metrics=["accuracy"] if config.sparse_metrics and "accuracy" in config.sparse_metrics else None,
        model_name=repo_id or f"{os.path.basename(str(base or 'model').rstrip('/'))}-sparse-head",
        eval_results=results or None,
    )


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


def _results_table(metric_names, dense: dict, sparse: dict, summary: dict) -> str:
    """The Results table: each metric, features per class and features used, for the dense and the sparse head."""
    def values(metrics):
        return [Markdown(_fmt(metrics.get(m), pct=m in ("accuracy", "exact_match"))) for m in metric_names]

    mean_features = f"{summary['mean_features_per_class']:.3g}"
    return markdown_table(
        ["head"] + [Markdown(m) for m in metric_names] + ["features per class", "features used"],
        [["dense (original)"] + values(dense) + [summary["num_features"], summary["num_features"]],
         ["sparse (this model)"] + values(sparse) + [mean_features, summary["n_features"]]],
        align=["left"] + ["right"] * (len(metric_names) + 2))


def _assets(model, tables):
    """Figures to write: {relative file name: matplotlib figure}."""
    from .plots import plot_class_features, plot_path_summary

    figures = {}
    if model.config.path_summary:
        figures[f"{ASSETS_DIR}/path.png"] = plot_path_summary(model.config)
    if any(t.features for t in tables):
        figures[f"{ASSETS_DIR}/class_weights.png"] = plot_class_features(tables)
    return figures


def _audit_sections(model, redact_text, images=True):
    reports = model.audit_reports or {}
    return [report.to_markdown(ASSETS_DIR if images else None, redact=redact_text) for report in reports.values()]


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


def render_model_card(model, *, repo_id: str | None = None, dataset_name: str | None = None,
                      redact: bool = False, content_warning: bool | None = None, n_snippets: int = 2,
                      images: bool = True):
    """`(card_text, figures)`: the Markdown of the card and the figures it links ({relative path: figure}).

    `redact` masks slurs in quoted examples (and adds a content warning); `images=False` leaves every picture out.
    `repo_id` must be a Hub repo id (``owner/name``): it is written into the card's code example.
    """
    from jinja2 import Environment

    check_repo_id(repo_id)

    from ..explain.class_features import class_features

    config = model.config
    summary = model.head_summary()
    tables = class_features(model)
    descriptions = model.feature_descriptions or {}
    pipeline_tag = PIPELINE_TAGS.get(config.modality, "text-classification")
    figures = _assets(model, tables) if images else {}
    dense, sparse = config.dense_metrics or {}, config.sparse_metrics or {}
    metric_names = [m for m in ("accuracy", "loss", "exact_match", "mse", "r2") if m in sparse or m in dense]
    std = config.standardization or {}
    base = config.base_model_name_or_path or "a transformers classifier"
    content_warning = redact if content_warning is None else content_warning
    context = dict(
        card_data=_card_data(model, repo_id, dataset_name, pipeline_tag).to_yaml(),
        title=escape_markdown(f"{os.path.basename(str(base).rstrip('/'))} with a sparse linear head"),
        base_name=f"**{escape_markdown(base)}**", base_model=escape_markdown(base),
        mean_features=f"{summary['mean_features_per_class']:.3g}", n_features=summary["n_features"],
        num_features=summary["num_features"], feature_source=escape_markdown(config.feature_source or "n/a"),
        family=config.family, alpha=_fmt(config.alpha), selected_lambda=_fmt((config.selection or {}).get("lam", config.selected_lambda)),
        selection=escape_markdown(_selection_text(config.selection)), n_train=std.get("n_train", "n/a"),
        metrics_split=dense.get("split", "n/a"), n_eval=dense.get("n_examples", "n/a"),
        n_path_points=len(config.path_summary or []), pipeline_tag=pipeline_tag, repo_id=repo_id or "path/to/this-model",
        model_class=type(model).__name__,
        example_input='"a gorgeous, witty film"' if config.modality != "image" else 'Image.open("example.jpg")',
        results_table=_results_table(metric_names, dense, sparse, summary),
        path_plot=f"{ASSETS_DIR}/path.png" if f"{ASSETS_DIR}/path.png" in figures else None,
        weights_plot=f"{ASSETS_DIR}/class_weights.png" if f"{ASSETS_DIR}/class_weights.png" in figures else None,
        classes=_class_rows(model, tables, descriptions, redact, n_snippets, images),
        edits=_edit_lines(config), audits=_audit_sections(model, redact), feature_health=_feature_health(config),
        content_warning=content_warning, redacted=redact,
    )
    env = Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.from_string(_template()).render(**context), figures


def check_repo_id(repo_id) -> None:
    """A `ValueError` unless `repo_id` is None or a valid Hub repo id (``name`` or ``owner/name``: letters, digits,
    ``-``, ``_``, ``.``; at most 96 characters), so that it cannot break out of the card's code block or metadata.

    Example:
        >>> check_repo_id("user/sst2-sparse")
    """
    if repo_id is None:
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str):
        raise ValueError(f"repo_id must be a string such as 'user/model-name', not {type(repo_id).__name__}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(
            f"repo_id {visible_text(repo_id)!r} is not a Hub repo id: give 'name' or 'owner/name' of letters, digits, "
            "'-', '_' and '.' (at most 96 characters, no '--' or '..', not starting or ending with '-' or '.')"
        ) from None


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
