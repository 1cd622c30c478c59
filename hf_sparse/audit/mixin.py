"""The audit methods of the public model classes: the recorded reports (`audit_reports`, saved as `audit.json`, a
registered checkpoint artifact) and `edit_features` (head edits with their before/after report).

Composed into the public classes in `hf_sparse.models`, as transformers composes `GenerationMixin`.

Example:
    >>> report = model.edit_features(remove=[12, 301]); print(report)
    >>> sorted(model.audit_reports)            # e.g. ["edits", "identity"]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..constants import AUDIT_NAME
from ..modeling.artifacts import Artifact, register_artifact
from . import edits
from .report import reports_from_json, reports_to_json


class AuditMixin:
    """Recorded audit reports and head edits on the model."""

    @property
    def audit_reports(self) -> dict:
        """Recorded audit reports by name ("identity", "subgroup", "error_slices", "edits"), saved as audit.json."""
        reports = self.__dict__.get("_audit_reports")
        if reports is None:
            reports = self.__dict__["_audit_reports"] = {}
        return reports

    @audit_reports.setter
    def audit_reports(self, value: dict) -> None:
        self.__dict__["_audit_reports"] = value

    #: `hf_sparse.audit.edits.edit_features` itself: typed, documented keywords; an unknown one is refused.
    edit_features = edits.edit_features


def _save(model, directory: Path, options: dict) -> list[str]:
    if not model.audit_reports:
        return []
    tmp = directory / (AUDIT_NAME + ".tmp")
    tmp.write_text(json.dumps(reports_to_json(model.audit_reports), indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, directory / AUDIT_NAME)
    return [AUDIT_NAME]


def _load(model, local_files: dict[str, str]) -> None:
    if AUDIT_NAME in local_files:
        with open(local_files[AUDIT_NAME], encoding="utf-8") as f:
            model.audit_reports = reports_from_json(json.load(f))


AUDIT_ARTIFACT = register_artifact(Artifact("audit_reports", files=(AUDIT_NAME,), save=_save, load=_load))
