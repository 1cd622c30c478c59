"""The model card's figures and metadata: the model-index (the YAML `eval_results`) and the Results table.

The sparse head installed now is this model's result; the dense head it replaced is a labelled baseline, never this
model's. Figures measured before an edit that changed the head (`sparse_metrics_stale`) are not shown as this
model's.

Example:
    >>> data = card_data_for(model, card_data={"license": "mit"})   # SparseModelCardData, model-index filled
    >>> [r.metric_name for r in data.eval_results][:2]
    ['accuracy', 'features per class']
"""

from __future__ import annotations

import os

from ..tables import Markdown, markdown_table
from ..text_safety import escape_markdown
from .card_data import PIPELINE_TAGS, SparseModelCardData, framework_versions, is_hub_id


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
