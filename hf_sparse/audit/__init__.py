"""Audits of sentiment and toxicity classifiers, the sparse features behind what they find, and a record of it.

- `identity_audit`: swap identity terms (the project's templates and terms, or yours, or terms found in your texts)
  and measure the change of the predicted probability and the flip rate per group and term, with the sparse features
  that carry the change;
- `subgroup_metrics`: subgroup, BPSN and BNSP AUC (Borkan et al. 2019), their generalized mean and the final
  score, for the sparse and the dense head side by side;
- `find_error_slices`: regions of the head's input space where the loss is high (Spotlight, D'Eon et al. 2022),
  with their examples and the sparse features most active there;
- `features_with_word`: the head's features that a word moves (label-stratified effect size over the training and
  evaluation texts), with the share of their top examples that contain it (a suspected shortcut);
- head edits live on the model: `model.edit_features(remove=[...])` (`hf_sparse.modeling.editing`);
- fixes that work: `balanced_refit(model, groups=contains_word("tuesday"))` refits the head on the cached features
  with every (group, label) cell weighted equally, `augment=identity_swaps()` adds counterfactual texts; both
  return a before/after `FixReport` (worst-group accuracy, log-loss, features changed).

Each report is recorded on the model (`model.audit_reports`), renders as Markdown for the model card, and round
trips through JSON (`reports_to_json` / `reports_from_json`). Each report class lives beside its audit
(`identity_report.py` next to `identity.py`, ...); `report.py` holds what they share.

Example:
    >>> from hf_sparse.audit import identity_audit, subgroup_metrics, find_error_slices
    >>> report = identity_audit(model, groups=None, templates=None)      # project defaults when None
    >>> slices = find_error_slices(model, dataset, n_slices=5)
    >>> model.edit_features(remove=[12, 301])                             # returns a before/after report
"""

from .edit_report import EditHistory, EditReport
from .fix_report import FixReport
from .fixes import balanced_refit, head_figures
from .group_makers import contains_word, identity_swaps
from .identity import identity_audit
from .identity_report import IdentityAuditReport
from .report import reports_from_json, reports_to_json
from .spotlight_report import ErrorSlice, ErrorSliceReport
from .subgroup_report import SubgroupReport
from ..text_safety import escape_markdown, redact_text
from .token_features import features_with_word
from .spotlight import find_error_slices
from .subgroup import bias_aucs, final_bias_score, generalized_mean, subgroup_metrics
from .terms import AMBIGUOUS_TERMS, IDENTITY_TERMS, TEMPLATES, fill_template, find_terms, swap_terms

__all__ = [
    "FixReport",
    "balanced_refit",
    "contains_word",
    "head_figures",
    "identity_swaps",
    "features_with_word",
    "AMBIGUOUS_TERMS",
    "EditHistory",
    "EditReport",
    "ErrorSlice",
    "ErrorSliceReport",
    "IDENTITY_TERMS",
    "IdentityAuditReport",
    "SubgroupReport",
    "TEMPLATES",
    "bias_aucs",
    "escape_markdown",
    "fill_template",
    "final_bias_score",
    "find_error_slices",
    "find_terms",
    "generalized_mean",
    "identity_audit",
    "redact_text",
    "reports_from_json",
    "reports_to_json",
    "subgroup_metrics",
    "swap_terms",
]
