"""Systematic-error discovery with the Spotlight method (D'Eon, D'Eon, Wright & Leyton-Brown, FAccT 2022).

A *spotlight* is a Gaussian kernel over the head's input space, `w_i = exp(-precision * |z_i - center|^2 / 2)`. Its
size `sum_i w_i` is held at a fixed share of the data (`spotlight_size`, e.g. 5%), and its center is moved to
maximize the kernel-weighted mean loss `sum_i w_i loss_i / sum_i w_i`: the spotlight settles on a coherent region
where the head errs. Here:

- **space**: the features standardized like the head's (`model.feature_mean`, `model.feature_std`), projected on
  their top principal components (scikit-learn PCA, `n_components`, as the paper's `--top_components`) and scaled
  to unit mean variance per component;
- **size**: for each center the precision is solved for by bisection so that the size is exactly the target, and
  the center's gradient accounts for that (implicit differentiation), so only the center is optimized (Adam);
  the paper reaches the size with an annealed barrier instead;
- **starts**: the best of a few starts at high-loss examples (the paper starts at the origin);
- **several spotlights**: after each one, losses are scaled by `1 - w / max w` (as in the paper) and its members'
  losses set to zero, so the next spotlight looks elsewhere.

Each slice reports its size, loss and accuracy, its top examples (with their text), and the head's features that
differ most in it (see `ErrorSlice`).

Example:
    >>> slices = find_error_slices(model, n_slices=3)          # the evaluation features cached by fit_sparse_head
    >>> slices[0].main_error, slices[0].examples[0]["text"], slices[0].features[0]
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from . import scoring
from .report import record_report
from .spotlight_report import ErrorSlice, ErrorSliceReport

_BISECTION_STEPS = 50


# ------------------------------------------------------------------------------------------- the kernel
def _log_precision_for_size(d2: torch.Tensor, size: float) -> torch.Tensor:
    """The log-precision g with `sum exp(-exp(g) d2 / 2) = size` (bisection; the sum falls as g grows)."""
    positive = d2[d2 > 0]
    scale = float(positive.min()) if positive.numel() else 1.0
    lo, hi = math.log(1e-8 / float(d2.max().clamp_min(1e-12))), math.log(200.0 / scale)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if float(torch.exp(-0.5 * math.exp(mid) * d2).sum()) > size:
            lo = mid
        else:
            hi = mid
    return torch.tensor(0.5 * (lo + hi), dtype=d2.dtype)


def _objective(Z, losses, center, log_precision):
    w = torch.exp(-0.5 * torch.exp(log_precision) * ((Z - center) ** 2).sum(1))
    total = w.sum()
    return (w * losses).sum() / total, total, w


def _spotlight(Z, losses, size, start, steps, lr):
    """Adam on the center; the precision follows the center so that the spotlight's size stays `size`."""
    center = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([center], lr=lr)
    best = (-math.inf, start.clone())
    for _ in range(steps):
        with torch.no_grad():
            g0 = _log_precision_for_size(((Z - center) ** 2).sum(1), size)
        g = g0.clone().requires_grad_(True)
        value, total, _ = _objective(Z, losses, center, g)
        dv_c, dv_g = torch.autograd.grad(value, [center, g], retain_graph=True)
        ds_c, ds_g = torch.autograd.grad(total, [center, g])
        # d value / d center along the constraint sum w = size: dg/dc = -(dS/dc) / (dS/dg).
        grad = dv_c - dv_g * ds_c / ds_g
        if value.item() > best[0]:
            best = (value.item(), center.detach().clone())
        opt.zero_grad()
        center.grad = -grad  # maximize
        opt.step()
    return best[1]


def _weights(Z, center, size):
    d2 = ((Z - center) ** 2).sum(1)
    g = _log_precision_for_size(d2, size)
    return torch.exp(-0.5 * torch.exp(g) * d2)


def _project(Zs: torch.Tensor, n_components: int | None, seed: int) -> tuple[torch.Tensor, str, dict]:
    """The slice space (top principal components, unit mean variance) and its parameters, so that `assign` can
    place new rows in it."""
    from sklearn.decomposition import PCA

    n, d = Zs.shape
    k = min(n_components or d, d, max(n - 1, 1))
    if k < d:
        pca = PCA(n_components=k, random_state=seed).fit(Zs.numpy())
        P = torch.as_tensor(pca.transform(Zs.numpy()), dtype=torch.float64)
        params = {"pca_mean": pca.mean_.tolist(), "components": pca.components_.tolist()}
        space = f"standardized head inputs, top {k} principal components"
    else:
        mean = Zs.mean(0)
        P = (Zs - mean).double()
        params = {"pca_mean": mean.tolist(), "components": None}
        space = "standardized head inputs"
    scale = P.pow(2).sum(1).mean().div(P.shape[1]).sqrt().clamp_min(1e-12)
    params["scale"] = float(scale)
    return P / scale, space, params


# ------------------------------------------------------------------------------------------- data
def _data(model, dataset, features, labels, texts, text_column, label_column, batch_size, max_length,
          progress=False):
    """(X, y, rows, texts, split) from explicit features, a dataset to encode, or the cached evaluation data."""
    from hf_sparse.modeling.fitting import prepare_labels

    family = scoring.family_of(model)
    if features is not None:
        if labels is None:
            raise ValueError("features= needs labels= (the true labels of those rows).")
        X = torch.as_tensor(features).float()
        y = prepare_labels(labels, model.config, family, "labels")
        rows = torch.arange(X.shape[0])
        return X, y, rows, (list(texts) if texts is not None else None), "given features"
    fit = model.fit_data
    if dataset is not None:
        from .subgroup import _column

        text_column = text_column or (fit.text_column if fit else "text")
        label_column = label_column or (fit.label_column if fit else "label")
        texts = [str(t) for t in _column(dataset, text_column, "text")]
        y = prepare_labels(_column(dataset, label_column, "label"), model.config, family, "dataset")
        X = scoring.encode_texts(model, texts, batch_size=batch_size, max_length=max_length, progress=progress,
                                 desc="error slices: encoding texts")
        return X, y, torch.arange(len(texts)), texts, "given dataset"
    if fit is None:
        raise ValueError("Pass dataset= (or features= and labels=): this model holds no cached features from "
                         "fit_sparse_head.")
    feats, source = fit.features, fit.dataset
    X = feats.features.float()
    y = prepare_labels(feats.labels, model.config, family, "cached features")
    rows = feats.indices
    texts = None
    column = text_column or fit.text_column
    if source is not None and column in getattr(source, "column_names", []):
        all_texts = source[column]
        texts = [str(all_texts[int(r)]) for r in rows]
    return X, y, rows, texts, "eval" if fit.eval_features is not None else "train"


# ------------------------------------------------------------------------------------------- entry point
def find_error_slices(
    model,
    dataset=None,
    n_slices: int = 5,
    *,
    spotlight_size: float = 0.05,
    features=None,
    labels=None,
    texts=None,
    head: str = "sparse",
    text_column: str | None = None,
    label_column: str | None = None,
    n_components: int | None = 32,
    steps: int = 150,
    lr: float = 0.05,
    n_starts: int = 3,
    n_examples: int = 10,
    n_features: int = 5,
    seed: int = 0,
    batch_size: int = 64,
    max_length: int | None = 128,
    record: bool = True,
    progress: bool = True,
) -> ErrorSliceReport:
    """Find `n_slices` non-overlapping spotlights of `spotlight_size` (share of the data) with high loss.

    Data: `features=` and `labels=` (and optionally `texts=`); or `dataset=` (encoded once; `text_column`,
    `label_column`); by default the evaluation features cached by `fit_sparse_head` (no forward pass). Returns an
    `ErrorSliceReport` (iterate it for the `ErrorSlice`s), recorded as `model.audit_reports["error_slices"]`.
    `progress`: progress bars over the encoding of `dataset` (texts) and over the search (`n_slices x n_starts`
    spotlights of `steps` Adam steps each; its time grows with the number of examples).
    """
    if not 0 < spotlight_size < 1:
        raise ValueError(f"spotlight_size is a share of the data, in (0, 1); got {spotlight_size}")
    X, y, rows, texts, split = _data(model, dataset, features, labels, texts, text_column, label_column,
                                     batch_size, max_length, progress)
    n = X.shape[0]
    size = spotlight_size * n
    if size < 2:
        raise ValueError(f"A spotlight of {spotlight_size:.1%} of {n} examples holds fewer than 2: raise "
                         "spotlight_size or pass more data.")
    if texts is not None and len(texts) != n:
        raise ValueError(f"texts has {len(texts)} entries for {n} examples")
    torch.manual_seed(seed)
    losses = scoring.example_losses(model, X, y, head)
    probs = scoring.probabilities(model, X, head)
    family = scoring.family_of(model)
    pred = (probs > 0.5).long() if family == "multilabel" else probs.argmax(1)
    correct = (pred == y.long()).all(1) if family == "multilabel" else pred == y
    Zs = scoring.standardized(model, X)
    Z, space, projection = _project(Zs, n_components, seed)
    projection.update(mean=model.feature_mean.detach().double().cpu().tolist(),
                      std=model.feature_std.detach().double().cpu().tolist())
    dense_correct = None
    if head == "sparse" and family == "multinomial" and scoring.head_module(model, "dense") is not None:
        dense_correct = scoring.probabilities(model, X, "dense").argmax(1) == y

    from tqdm.auto import tqdm

    remaining = losses.clone()
    slices = []
    m = max(2, int(round(size)))
    bar = tqdm(total=n_slices * n_starts, desc="error slices: searching", unit="spotlight",
               disable=not scoring.progress_enabled(progress))
    for rank in range(1, n_slices + 1):
        if float(remaining.max()) <= 0:  # every example's loss is spent: no further slice to find
            bar.set_description(f"error slices: {len(slices)} found, no loss left for more")
            bar.total = bar.n
            break
        candidates = torch.argsort(remaining, descending=True)[: max(n_starts, 20)]
        scored = []
        for c in candidates.tolist():
            w = _weights(Z, Z[c], size)
            scored.append((float((w * remaining).sum() / w.sum()), c))
        starts = [c for _, c in sorted(scored, reverse=True)[:n_starts]]
        best_value, best_center = -math.inf, None
        for c in starts:
            center = _spotlight(Z, remaining, size, Z[c], steps, lr)
            w = _weights(Z, center, size)
            value = float((w * remaining).sum() / w.sum())
            if value > best_value:
                best_value, best_center = value, center
            bar.update(1)
        bar.update(n_starts - len(starts))  # fewer candidates than starts (tiny data)
        w = _weights(Z, best_center, size)
        members = torch.argsort(w, descending=True)[:m]
        found = _describe(model, rank, w, members, X, Zs, y, pred, correct, losses, rows, texts, n_examples,
                          n_features, family)
        found.center = best_center.tolist()
        found.radius2 = float(((Z[members] - best_center) ** 2).sum(1).max())
        if dense_correct is not None:
            found.dense_accuracy = float(dense_correct[members].double().mean())
        slices.append(found)
        remaining = remaining * (1 - w / w.max())
        remaining[members] = 0.0
    bar.close()
    report = ErrorSliceReport(
        slices=slices, n_examples=int(n), spotlight_size=float(spotlight_size), space=space, head=head, split=split,
        overall_loss=float(losses.mean()), overall_accuracy=float(correct.double().mean()),
        dense_overall_accuracy=None if dense_correct is None else float(dense_correct.double().mean()),
        projection=projection, warnings=_disagreements(slices),
    )
    if record:
        record_report(model, "error_slices", report)
    return report


#: A slice where the dense and the sparse head differ in accuracy by more than this is flagged: the audit of the
#: sparse head then says little about the model the user started from there.
DISAGREEMENT_MARGIN = 0.10


def _disagreements(slices) -> list[str]:
    out = []
    for s in slices:
        if s.dense_accuracy is not None and abs(s.dense_accuracy - s.member_accuracy) > DISAGREEMENT_MARGIN:
            worse = "dense" if s.dense_accuracy < s.member_accuracy else "sparse"
            out.append(f"Slice {s.rank}: the dense head's accuracy ({s.dense_accuracy:.3f}) and the sparse head's "
                       f"({s.member_accuracy:.3f}) differ by more than {DISAGREEMENT_MARGIN:.2f}; the {worse} head "
                       "errs more here, so this slice describes one head more than the other.")
    return out


def _describe(model, rank, w, members, X, Zs, y, pred, correct, losses, rows, texts, n_examples, n_features, family):
    names = scoring.label_names(model)
    name = lambda c: names.get(int(c), str(int(c)))  # noqa: E731
    inside = torch.zeros(len(w), dtype=torch.bool)
    inside[members] = True
    total = float(w.sum())
    main_error = None
    if family == "multinomial":
        errors = Counter((int(y[i]), int(pred[i])) for i in members.tolist() if not bool(correct[i]))
        if errors:
            (t, p), count = errors.most_common(1)[0]
            main_error = {"true": name(t), "predicted": name(p), "count": int(count), "true_id": t, "predicted_id": p}
    examples = []
    for i in members[:n_examples].tolist():
        label = y[i].tolist() if family == "multilabel" else name(y[i])
        predicted = pred[i].tolist() if family == "multilabel" else name(pred[i])
        examples.append({"index": int(rows[i]), "text": texts[i] if texts is not None else None, "label": label,
                         "predicted": predicted, "loss": float(losses[i]), "weight": float(w[i])})
    return ErrorSlice(
        rank=rank, size=total, share=total / len(w), n_members=int(len(members)),
        loss=float((w * losses).sum() / total), accuracy=float((w * correct.double()).sum() / total),
        member_loss=float(losses[members].mean()), member_accuracy=float(correct[members].double().mean()),
        label_counts=_counts(y[members], name, family), predicted_counts=_counts(pred[members], name, family),
        main_error=main_error, examples=examples,
        features=_slice_features(model, Zs, inside, y, correct, main_error, n_features),
        member_indices=[int(rows[i]) for i in members.tolist()],
    )


def _counts(values, name, family) -> dict:
    if family == "multilabel":
        return {name(c): int(values[:, c].sum()) for c in range(values.shape[1])}
    return {name(c): int(k) for c, k in sorted(Counter(values.tolist()).items())}


def _slice_features(model, Zs, inside, y, correct, main_error, n_features) -> list[dict]:
    """The head's active features that set the slice apart, most responsible first.

    inside / outside: mean standardized activation in and out of the slice. With a main error (true class t
    predicted as p): shift = slice mean minus the mean of correctly classified class-t examples outside it;
    push = shift times the feature's standardized weight difference (p minus t), the logit margin towards the
    wrong class that the shift carries (ranking key); class_gap = mean of correct class-p minus correct class-t.
    """
    active = model.sparse_head.active_features.cpu()
    if active.numel() == 0:
        return []
    W = model.sparse_head.weight.detach().double().cpu()[:, active] * model.feature_std.detach().double().cpu()[active]
    Za = Zs[:, active]
    mean_in, mean_out = Za[inside].mean(0), Za[~inside].mean(0)
    names = scoring.label_names(model)
    rows = []
    for k, j in enumerate(active.tolist()):
        row = {"feature": int(j), "inside": float(mean_in[k]), "outside": float(mean_out[k]),
               "difference": float(mean_in[k] - mean_out[k]), "shift": None, "push": None, "class_gap": None,
               "weights": {names[c]: float(W[c, k]) for c in range(W.shape[0]) if float(W[c, k]) != 0.0}}
        rows.append(row)
    if main_error is not None:
        t, p = main_error["true_id"], main_error["predicted_id"]
        ref = correct & (y == t) & ~inside
        other = correct & (y == p) & ~inside
        if bool(ref.any()):
            shift = Za[inside].mean(0) - Za[ref].mean(0)
            push = (W[p] - W[t]) * shift
            gap = (Za[other].mean(0) - Za[ref].mean(0)) if bool(other.any()) else torch.full_like(shift, float("nan"))
            for k, row in enumerate(rows):
                row.update(shift=float(shift[k]), push=float(push[k]), class_gap=float(gap[k]))
            rows.sort(key=lambda r: -r["push"])
            return rows[:n_features]
    rows.sort(key=lambda r: -abs(r["difference"]))
    return rows[:n_features]
