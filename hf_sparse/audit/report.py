"""What every audit report shares: JSON round trips, the registry of report types, and recording on the model.

Each report lives beside its audit: `IdentityAuditReport` in `identity_report.py` (next to `identity.py`),
`SubgroupReport` in `subgroup_report.py`, `ErrorSlice` / `ErrorSliceReport` in `spotlight_report.py`, `EditReport` /
`EditHistory` in `edit_report.py` and `FixReport` in `fix_report.py`. Every report has `to_dict()` / `from_dict()`
(JSON-safe: NaN becomes None), `to_json(path=None)`, `str(report)` (a text table), `to_markdown(asset_dir="audit",
redact=False)` and `save_plots(directory) -> [file names]`. Markdown images point at `asset_dir/<file name>`, so a
model card written to `card/` calls `report.save_plots("card/audit")` and `report.to_markdown("audit")`;
`asset_dir=None` leaves images out. Tables come from `hf_sparse.tables`, pictures from `hf_sparse.plotting`.

Dataset text is untrusted: `escape_markdown` neutralizes HTML and Markdown in it, and `redact=True` masks words from
a small built-in list of slurs and profanity (`REDACT_PATTERNS`), since toxicity data is offensive.

Audit functions record their report on the model (`model.audit_reports[key]`, see `record_report`);
`reports_to_json` / `reports_from_json` turn that dict into JSON (e.g. an `audit.json` next to a checkpoint) and back.
The report classes are still importable from here (`from hf_sparse.audit.report import EditReport`).

Example:
    >>> report = identity_audit(model)
    >>> print(report); report.to_json("identity.json")
    >>> files = report.save_plots("card/audit"); md = report.to_markdown("audit", redact=True)
    >>> same = IdentityAuditReport.from_dict(json.load(open("identity.json")))
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from ..tables import fmt as _fmt  # noqa: F401  (the shared cell format, used by the report modules)
from ..tables import markdown_table as _md_table  # noqa: F401
from ..tables import text_table as _text_table  # noqa: F401
from ..text_safety import REDACT_PATTERNS, escape_markdown, redact_text  # noqa: F401  (re-exported)
from ..utils import json_safe as _clean  # noqa: F401  (the one JSON-safe helper; `_clean` for older imports)


# ----------------------------------------------------------------------------------- helpers
def _features_cell(items: list[dict], value_key: str, limit: int = 3) -> str:
    """"12 (0.310), 4 (0.120)": the first `limit` features of a list of {feature, value_key} dicts."""
    return ", ".join(f"{d['feature']} ({_fmt(d[value_key], 3)})" for d in items[:limit]) or "–"


def _image(asset_dir: str | None, name: str, alt: str) -> str:
    """The Markdown image line of a report's plot (nothing when `asset_dir` is None)."""
    if asset_dir is None:
        return ""
    return f"\n\n![{alt}]({asset_dir.rstrip('/')}/{name})"


def _figure(width_px: int = 900, height_px: int = 500, ncols: int = 1):
    """`hf_sparse.plotting.figure`, imported when a plot is drawn (so importing the audit loads no matplotlib)."""
    from ..plotting import figure

    return figure(width_px, height_px, ncols=ncols)


def _save(fig, directory: str | os.PathLike, name: str) -> str:
    """`hf_sparse.plotting.save`: write, close, return the file name."""
    from ..plotting import save

    return save(fig, directory, name)


# ----------------------------------------------------------------------------------- base classes
class _Report:
    """Shared behaviour: dict/JSON round trips."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict:
        """A JSON-safe dict of every field (plus `"type"`)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        return {"type": type(self).__name__, **_clean(data)}

    @classmethod
    def from_dict(cls, data: dict):
        """The report back from `to_dict()` output (unknown keys are an error, so typos do not pass silently)."""
        data = dict(data)
        kind = data.pop("type", cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f"this is a {kind}, not a {cls.__name__}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {unknown}")
        return cls(**data)

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


class _ReportList:
    """A report that holds a list of reports (the field named by `_items`) and reads like that list."""

    _items: ClassVar[str] = ""

    def __iter__(self):
        return iter(getattr(self, self._items))

    def __len__(self) -> int:
        return len(getattr(self, self._items))

    def __getitem__(self, i):
        return getattr(self, self._items)[i]


# ----------------------------------------------------------------------------------- registry
#: Report classes by name (the `"type"` of their JSON); each report module adds its classes with `register`.
REPORT_CLASSES: dict[str, type] = {}
#: The keys of `model.audit_reports`, in the order a model card shows them.
REPORT_KEYS = ("identity", "subgroup", "error_slices", "edits")
#: The modules that define report classes, imported on demand so that any saved type can be read back.
REPORT_MODULES = ("identity_report", "subgroup_report", "spotlight_report", "edit_report", "fix_report")
#: Names that lived in this module before the reports moved beside their audits: {name: module}.
_MOVED = {
    "IdentityAuditReport": "identity_report", "SubgroupReport": "subgroup_report", "ErrorSlice": "spotlight_report",
    "ErrorSliceReport": "spotlight_report", "EditReport": "edit_report", "EditHistory": "edit_report",
    "DISAGREEMENT_MARGIN": "contrasts", "SIGN_MIN": "contrasts", "CONTRAST_INTERVAL": "contrasts",
    "resolve_contrast_side": "contrasts", "paired_contrast": "contrasts", "find_disagreements": "contrasts",
}


def register(cls: type) -> type:
    """Class decorator: make `cls` readable from JSON by its name (`reports_from_json`, `EditHistory`)."""
    REPORT_CLASSES[cls.__name__] = cls
    return cls


def report_class(name: str) -> type:
    """The report class called `name` (the `"type"` of its JSON), importing the report modules when needed.

    Example:
        >>> report_class("SubgroupReport").from_dict(data)
    """
    if name not in REPORT_CLASSES:
        for module in REPORT_MODULES:
            importlib.import_module(f"{__package__}.{module}")
    if name not in REPORT_CLASSES:
        raise ValueError(f"unknown audit report type {name!r}; known types: {sorted(REPORT_CLASSES)}")
    return REPORT_CLASSES[name]


def __getattr__(name: str):
    """The report classes and contrast helpers, importable from here as before they moved to their own modules."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------- recording
def record_report(model, key: str, report) -> None:
    """Store `report` on the model as `model.audit_reports[key]`; edits are appended to an `EditHistory`."""
    if key not in REPORT_KEYS:
        raise ValueError(f"unknown report key {key!r}; one of {REPORT_KEYS}")
    reports = model.audit_reports or {}
    if key == "edits":
        # Audits recorded so far describe the head before this edit: say so where they are shown (once: the first
        # edit after they were run).
        name = "Fix" if type(report).__name__ == "FixReport" else "Head edit"
        for earlier in reports.values():
            if hasattr(earlier, "before_edit") and earlier.before_edit is None:
                earlier.before_edit = f"{name} {getattr(report, 'index', 1)}"
        history_class = report_class("EditHistory")
        history = reports.get("edits")
        if not isinstance(history, history_class):
            history = history_class()
        history.append(report)
        report = history
    reports[key] = report
    model.audit_reports = {k: reports[k] for k in sorted(reports, key=lambda k: REPORT_KEYS.index(k))}


def measured_before_edit(edit: str | None) -> list[str]:
    """The Markdown lines an audit section adds when the head changed after the audit ran (`edit`: "Fix 1")."""
    if not edit:
        return []
    return ["", f"*Measured on the head as it was before {edit}: the head has changed since; run the audit again to "
                "measure the head as it is now.*"]


def reports_to_json(reports: dict) -> dict:
    """`model.audit_reports` as a JSON-safe dict {"format", "version", key: report dict} (e.g. for audit.json)."""
    out: dict[str, Any] = {"format": "hf_sparse.audit", "version": 1}
    for key, value in (reports or {}).items():
        out[key] = value.to_dict()
    return out


def reports_from_json(data) -> dict:
    """The reports back from `reports_to_json` output (a dict or its JSON text)."""
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if data.get("format") != "hf_sparse.audit":
        raise ValueError("not hf_sparse audit reports (no \"format\": \"hf_sparse.audit\")")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("format", "version"):
            continue
        kind = value.get("type") if isinstance(value, dict) else None
        try:
            cls = report_class(kind) if isinstance(kind, str) else None
        except ValueError:
            cls = None
        if cls is None:
            raise ValueError(f"audit report {key!r} has unknown type {kind!r}")
        out[key] = cls.from_dict(value)
    return out
