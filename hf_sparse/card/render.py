"""The model card of a sparse-head model: `huggingface_hub.ModelCard` rendered from `model_card_template.md`.

Everything comes from the model itself (config, head, feature descriptions, recorded audits) and its card data
(`model.model_card_data`, a `SparseModelCardData` kept in the config): no network. The figures are the head's as
installed now (features per class after any edit; sparse metrics measured before an edit are not shown as this
model's), the sparse head is the model-index result and the dense head a labelled baseline. Pictures
are written as files beside the card (`card_assets/`, `feature_images/`) and linked by relative path. An existing
README.md is updated in place: only the part between the hf_sparse markers is replaced, the user's other text is
kept, and the metadata is merged (the user's keys kept, hf_sparse's updated).

The parts live in their own modules: `model_index` (metadata, model-index, Results table), `class_tables` (the
per-class feature tables), `path_data` (the path picture's numbers), `sections` (the prose sections) and
`readme_merge` (updating README.md in place); this module puts them together and keeps their names importable.

Example:
    >>> card = create_model_card(model, card_data={"license": "mit"})   # a ModelCard (text only)
    >>> write_model_card(model, "out")                  # README.md + card_assets/*.png
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from ..text_safety import escape_markdown
from .card_data import check_repo_id
from .class_tables import SNIPPET_CHARS, _class_rows, binary_mirror
from .model_index import DENSE_BASELINE, INDEX_METRICS, _fmt, _results_table, card_data_for, sparse_metrics_stale
from .path_data import path_plot_data
from .readme_merge import BEGIN, END, merge_card, write_readme
from .sections import (AUDIT_LIMITATIONS, _base_text, _edit_lines, _example_input, _limitations, _selection_text,
                       _split_text, _training_text)

__all__ = ["ASSETS_DIR", "AUDIT_LIMITATIONS", "BEGIN", "DENSE_BASELINE", "END", "INDEX_METRICS", "SNIPPET_CHARS",
           "binary_mirror", "card_data_for", "create_model_card", "merge_card", "path_plot_data", "render_model_card",
           "sparse_metrics_stale", "write_model_card"]

ASSETS_DIR = "card_assets"


def _template() -> str:
    return resources.files("hf_sparse.card").joinpath("model_card_template.md").read_text(encoding="utf-8")


def _assets(plot_data, tables, titles=None):
    """Figures to write: {relative file name: matplotlib figure} (`plot_data`: `path_plot_data(model)`)."""
    from .plots import plot_class_features, plot_path_data

    figures = {}
    if plot_data is not None:
        figures[f"{ASSETS_DIR}/path.png"] = plot_path_data(plot_data)
    if any(t.features for t in tables):
        figures[f"{ASSETS_DIR}/class_weights.png"] = plot_class_features(tables, titles=titles)
    return figures


def _audit_sections(model, redact_text, images=True):
    reports = model.audit_reports or {}
    return [report.to_markdown(ASSETS_DIR if images else None, redact=redact_text) for report in reports.values()]


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
    plot = path_plot_data(model)
    figures = _assets(plot, tables, titles) if images else {}
    dense, sparse = config.dense_metrics or {}, config.sparse_metrics or {}
    stale = sparse_metrics_stale(model)
    metric_names = [m for m in ("accuracy", "loss", "exact_match", "mse", "r2") if m in sparse or m in dense]
    n_eval = sparse.get("n_examples", dense.get("n_examples", "n/a"))
    content_warning = redact if content_warning is None else content_warning
    name, base_name, base_row = _base_text(config, data)
    hub_id = data.model_id
    if f"{ASSETS_DIR}/path.png" not in figures:
        plot = None
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


def create_model_card(model, **kwargs):
    """The `huggingface_hub.ModelCard` of `model` (see `render_model_card` for the options); no files written."""
    from huggingface_hub import ModelCard

    text, figures = render_model_card(model, **kwargs)
    _close(figures)
    return ModelCard(text)


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
    write_readme(directory, text)
    return ["README.md"] + written


def _close(figures) -> None:
    from ..plotting import close

    close(figures)
