"""Audits recorded before a head edit or fix say, in the card, that they describe the head as it was before it
(the demo's identity audit was shown beside the fixed head without a word)."""

from __future__ import annotations

from types import SimpleNamespace

from hf_sparse.audit.edit_report import EditReport
from hf_sparse.audit.identity_report import IdentityAuditReport
from hf_sparse.audit.report import record_report, reports_from_json, reports_to_json
from hf_sparse.audit.subgroup_report import SubgroupReport

NOTE = ("*Measured on the head as it was before Head edit 1: the head has changed since; run the audit again to "
        "measure the head as it is now.*")


def _edit(index: int) -> EditReport:
    return EditReport(removed=[3], reweighted={}, refit=False, split="eval", n_examples=10,
                      before={"accuracy": 0.8}, after={"accuracy": 0.9}, index=index)


def test_audits_recorded_before_an_edit_say_so_in_the_card_and_keep_it_through_json():
    model = SimpleNamespace(audit_reports=None)
    identity = IdentityAuditReport(mode="templates", head="sparse", target_label="toxic", target_ids=[1],
                                   reference="the mean over the group's terms")
    subgroup = SubgroupReport(heads=["sparse", "dense"], target_label="toxic", source="columns",
                              overall_auc={"sparse": 0.9, "dense": 0.9})
    record_report(model, "identity", identity)
    record_report(model, "subgroup", subgroup)
    assert NOTE not in identity.to_markdown(None) and NOTE not in subgroup.to_markdown(None)

    record_report(model, "edits", _edit(1))
    assert identity.before_edit == subgroup.before_edit == "Head edit 1"
    assert NOTE in identity.to_markdown(None) and NOTE in subgroup.to_markdown(None)
    record_report(model, "edits", _edit(2))  # the first edit after the audit is the one named
    assert identity.before_edit == "Head edit 1"

    again = reports_from_json(reports_to_json(model.audit_reports))
    assert again["identity"].before_edit == again["subgroup"].before_edit == "Head edit 1"
    assert NOTE in again["identity"].to_markdown(None)

    rerun = IdentityAuditReport(mode="templates", head="sparse", target_label="toxic", target_ids=[1],
                                reference="the mean over the group's terms")
    record_report(model, "identity", rerun)  # run again after the edits: describes the head as it is
    assert rerun.before_edit is None and NOTE not in rerun.to_markdown(None)
