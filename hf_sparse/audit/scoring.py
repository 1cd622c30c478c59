"""How the audits read a head: which label is audited, its probability, predictions, losses, contributions.

Every audit works on the head's input features (`model.encode(texts)` or the cached `model.fit_data` features), so
the sparse head and the dense head can be scored on the same features without another forward pass.

Example:
    >>> ids, name = target_ids(model, "toxic")             # a label name, an id, or None for the default
    >>> X = model.encode(["some text"])
    >>> p = target_probability(model, X, ids)              # P(toxic) from the sparse head
    >>> p_dense = target_probability(model, X, ids, head="dense")
"""

from __future__ import annotations

import torch

#: Label names taken as the audited ("positive") label when none is given, in this order.
DEFAULT_TARGET_NAMES = ("toxic", "toxicity", "positive", "pos", "offensive", "hate", "yes", "true", "1")
HEADS = ("sparse", "dense")


def family_of(model) -> str:
    """The head's family: `"multinomial"` (softmax) or `"multilabel"` (sigmoids); regression is not audited."""
    from hf_sparse.modeling.fitting import family_for

    family = getattr(model.config, "family", None) or family_for(model.config)
    if family == "gaussian":
        raise ValueError("The audits need a classifier; this model is a regression model (family 'gaussian').")
    return family


def label_names(model) -> dict[int, str]:
    """{class id: name} from the model's config (names default to the id as text)."""
    from hf_sparse.explain.class_features import label_name

    return {i: label_name(model.config, i) for i in range(model.config.num_labels)}


def target_ids(model, target_label=None) -> tuple[list[int], str]:
    """The audited class ids and a display name.

    `target_label` is a label name, a class id, or a list of them (their probabilities are added, e.g.
    `["hate", "offensive"]`). None: for two classes, class 1; otherwise the first label named like
    `DEFAULT_TARGET_NAMES` ("toxic", "positive", ...).
    """
    names = label_names(model)
    by_name = {v.lower(): k for k, v in names.items()}
    if target_label is None:
        if len(names) == 2 and family_of(model) == "multinomial":
            return [1], names[1]
        for candidate in DEFAULT_TARGET_NAMES:
            if candidate in by_name:
                return [by_name[candidate]], names[by_name[candidate]]
        raise ValueError(f"Which label should the audit score? This model has {len(names)} labels ({names}); "
                         "pass target_label= (a name or an id, or a list of them).")
    items = list(target_label) if isinstance(target_label, (list, tuple, set)) else [target_label]
    ids = []
    for item in items:
        if isinstance(item, str) and item.lower() in by_name:
            ids.append(by_name[item.lower()])
        elif isinstance(item, int) and not isinstance(item, bool) and item in names:
            ids.append(int(item))
        else:
            raise ValueError(f"target_label {item!r} is not a label of this model: labels are {names}.")
    ids = sorted(set(ids))
    return ids, "+".join(names[i] for i in ids)


def head_module(model, head: str = "sparse"):
    """`model.sparse_head` or `model.dense_head`."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return model.sparse_head if head == "sparse" else model.dense_head


@torch.no_grad()
def logits_of(model, X: torch.Tensor, head: str = "sparse") -> torch.Tensor:
    """(n, num_labels) float64 logits of one head on features `X`."""
    module = head_module(model, head)
    param = module.values if head == "sparse" else module.weight
    return module(torch.as_tensor(X).to(device=param.device, dtype=param.dtype)).double().cpu()


def probabilities(model, X: torch.Tensor, head: str = "sparse") -> torch.Tensor:
    """(n, num_labels) probabilities: softmax (single-label) or independent sigmoids (multi-label)."""
    from hf_sparse.explain.explanation import probabilities_from_logits

    return probabilities_from_logits(logits_of(model, X, head), family_of(model))


def target_probability(model, X: torch.Tensor, ids: list[int], head: str = "sparse") -> torch.Tensor:
    """(n,) probability of the audited label(s): their probabilities added (capped at 1 for multi-label)."""
    return probabilities(model, X, head)[:, ids].sum(1).clamp(max=1.0)


def predictions(model, probs: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """(n,) predicted labels: the argmax class (single-label), or whether P(target) > 0.5 (multi-label)."""
    if family_of(model) == "multilabel":
        return (probs[:, ids].sum(1) > 0.5).long()
    return probs.argmax(1)


def margin_weights(model, ids: list[int]) -> torch.Tensor:
    """(num_features,) weights of the sparse head's "target margin": the mean weight of the target classes minus the
    mean weight of the others (single-label; for two classes, the logit difference that fixes the probability), or
    the target logits' weight (multi-label). `x * margin_weights` is each feature's contribution to that margin."""
    W = model.sparse_head.weight.detach().double().cpu()
    if family_of(model) == "multilabel" or W.shape[0] == len(ids):
        return W[ids].sum(0)
    others = [c for c in range(W.shape[0]) if c not in ids]
    return W[ids].mean(0) - W[others].mean(0)


def progress_enabled(progress: bool) -> bool:
    """Whether to show an audit's progress bars: `progress`, unless the `datasets` progress bars are switched off
    globally (`datasets.disable_progress_bars()`, as the command line's `--no-progress` does)."""
    if not progress:
        return False
    from datasets.utils import are_progress_bars_disabled

    return not are_progress_bars_disabled()


def encode_texts(model, texts, *, batch_size: int = 64, max_length: int | None = 128, progress: bool = True,
                 desc: str = "encoding texts") -> torch.Tensor:
    """`model.encode(texts)` with a progress bar in texts (the slow part of an audit that encodes its probes): the
    same batches as one `model.encode` call, so the same features.

    Example:
        >>> X = encode_texts(model, ["a fine film", "a dull film"], desc="identity audit: encoding")
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    out = []
    with tqdm(total=len(texts), desc=desc, unit="texts", disable=not progress_enabled(progress)) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            out.append(model.encode(chunk, batch_size=batch_size, max_length=max_length))
            bar.update(len(chunk))
    if not out:
        return model.encode([], batch_size=batch_size, max_length=max_length)
    return torch.cat(out)


def standardized(model, X: torch.Tensor) -> torch.Tensor:
    """Features standardized with the head's training mean and std (`model.feature_mean`, `feature_std`)."""
    mean = model.feature_mean.detach().double().cpu()
    std = model.feature_std.detach().double().cpu().clamp_min(1e-12)
    return (torch.as_tensor(X).double() - mean) / std


def example_losses(model, X: torch.Tensor, y: torch.Tensor, head: str = "sparse") -> torch.Tensor:
    """(n,) per-example loss: cross-entropy (single-label) or binary cross-entropy summed over labels."""
    z = logits_of(model, X, head)
    if family_of(model) == "multilabel":
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y.double(), reduction="none").sum(1)
    return torch.nn.functional.cross_entropy(z, y.long(), reduction="none")
