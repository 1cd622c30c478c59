"""Saving and loading what explains a model beside its weights: feature descriptions and audit reports (JSON)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..explain.descriptions import DESCRIPTIONS_NAME, FeatureDescriptions

AUDIT_NAME = "audit.json"
logger = logging.getLogger(__name__)


def save_explanations(model, directory: Path) -> list[str]:
    """Write `feature_descriptions.json` (+ images) and `audit.json` when the model has them; return the names."""
    written = []
    if model.feature_descriptions:
        written += model.feature_descriptions.save(directory)
    if model.audit_reports:
        from ..audit.report import reports_to_json

        tmp = directory / (AUDIT_NAME + ".tmp")
        tmp.write_text(json.dumps(reports_to_json(model.audit_reports), indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, directory / AUDIT_NAME)
        written.append(AUDIT_NAME)
    return written


def load_explanations(model, local_files: dict[str, str]) -> None:
    """Attach the descriptions and audits of a checked checkpoint (files listed in its manifest) to `model`."""
    if DESCRIPTIONS_NAME in local_files:
        model.feature_descriptions = FeatureDescriptions.load(Path(local_files[DESCRIPTIONS_NAME]).parent)
    if AUDIT_NAME in local_files:
        from ..audit.report import reports_from_json

        with open(local_files[AUDIT_NAME], encoding="utf-8") as f:
            model.audit_reports = reports_from_json(json.load(f))
