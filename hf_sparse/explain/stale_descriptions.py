"""Whether feature descriptions still match the model's encoder: the encoder fingerprint recorded with them and the
staleness check.

`encoder_fingerprint` hashes every tensor of the wrapped model except its final layer (the head); descriptions
record it when made. When the encoder changes afterwards (trained further, e.g. by `Trainer`, or a checkpoint whose
encoder weights differ), `check_stale` marks them `stale = True` with a `stale_reason` and warns once; it runs when
a model is loaded and whenever `model.feature_descriptions` is read after a weight of the encoder changed. `stale`
is None when unknown: a file without a fingerprint (older hf_sparse), or an encoder in a dtype its fingerprint
cannot be compared in.

Example:
    >>> check_stale(model).stale                         # False: the encoder the features were described on
    False
    >>> compare_encoder(model.feature_descriptions.encoder, trained_further)[0]
    True
"""

from __future__ import annotations

import warnings
from itertools import chain
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .descriptions import FeatureDescriptions

STALE_WARNING = ("the feature descriptions were computed for a different encoder (it was trained further after "
                 "describe_features); run model.describe_features(...) again")
NO_FINGERPRINT = ("these feature descriptions record no fingerprint of the encoder they were computed for (written "
                  "by an older hf_sparse), so whether they still match it is unknown; run model.describe_features() "
                  "again to record one")


def _producer(model):
    """(the wrapped model, the name prefix of its final layer) or None when `model` is not a sparse-head model."""
    base, head = getattr(model, "model", None), getattr(getattr(model, "config", None), "head_module", None)
    if not isinstance(base, torch.nn.Module) or not head:
        return None
    return base, f"{head}."


def _encoder_tensors(model) -> dict[str, torch.Tensor]:
    """The tensors that make the head's input features: the wrapped model's state dict without its final layer."""
    base, prefix = _producer(model)
    return {k: v for k, v in base.state_dict().items() if not k.startswith(prefix)}


def _signature(model) -> tuple | None:
    """Identity and in-place version of every encoder tensor: changes whenever one is replaced or written to (an
    optimizer step, `load_state_dict`), at the cost of a walk over the parameters, not a hash."""
    found = _producer(model)
    if found is None:
        return None
    base, prefix = found
    named = chain(base.named_parameters(remove_duplicate=False), base.named_buffers(remove_duplicate=False))
    return tuple((name, id(t), t._version) for name, t in named if not name.startswith(prefix))


def encoder_fingerprint(model) -> dict | None:
    """The fingerprint of the encoder that produces `model`'s features (every tensor of the wrapped model but its
    final layer): the whole-base fingerprint of `hf_sparse.modeling.saving.base_fingerprint` (sha256 in float32,
    bfloat16 and float16, and the dtype). About 0.1 s for all-MiniLM-L6-v2 (90 MB). None for a model without one
    (or whose weights are offloaded to the meta device).

    Example:
        >>> encoder_fingerprint(model)["sha256"]["float32"][:12]
        '3f1c0b2a9e4d'
    """
    from ..modeling.saving import base_fingerprint

    if _producer(model) is None:
        return None
    tensors = _encoder_tensors(model)
    if any(t.device.type == "meta" for t in tensors.values()):  # offloaded weights: nothing to hash
        return None
    return base_fingerprint(tensors)


def compare_encoder(recorded: dict | None, model) -> tuple[bool | None, str | None]:
    """(stale, reason) of descriptions whose encoder fingerprint is `recorded`, against `model`'s encoder now.

    Example:
        >>> compare_encoder(model.feature_descriptions.encoder, model)
        (False, None)
    """
    from ..modeling.saving import fingerprint_difference

    if recorded is None:
        return None, NO_FINGERPRINT
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), dict):
        return None, (f"the recorded encoder fingerprint is malformed ({str(recorded)[:80]}), so whether the "
                      "descriptions match the encoder is unknown; run model.describe_features() again")
    if _producer(model) is None:
        return None, "this model has no encoder to compare the descriptions with"
    tensors = _encoder_tensors(model)
    if any(t.device.type == "meta" for t in tensors.values()):
        return None, "the encoder's weights are not loaded (meta device), so they could not be compared"
    diff = fingerprint_difference(tensors, recorded)
    if diff is None:
        return False, None
    if diff["kind"] == "dtype":
        return None, (f"the descriptions were computed on a {diff['saved']} encoder and this one is {diff['loaded']}: "
                      f"weights cannot be compared across these two types, so whether they match is unknown (load the "
                      f"model with dtype=torch.{diff['saved']} to check)")
    if diff["kind"] == "count":
        return True, (f"{STALE_WARNING} (the encoder has {diff['tensors']} tensors, the described one had "
                      f"{diff['recorded']})")
    return True, (f"{STALE_WARNING} (sha256 of the encoder's {diff['tensors']} tensors in {diff['target']}: "
                  f"{diff['digest']}... instead of {diff['recorded']}...)")


def check_stale(model, descriptions: "FeatureDescriptions | None" = None, *, force: bool = False):
    """Compare `descriptions` (default: the model's) with `model`'s encoder and set their `stale` and
    `stale_reason`; warn once (per descriptions) when they are stale. The hash is only recomputed when a tensor of
    the encoder was replaced or written to since the last check (or with `force=True`). Returns the descriptions.

    Example:
        >>> check_stale(model).stale          # True after the encoder was trained further
    """
    from .descriptions import FeatureDescriptions  # the container (which imports this module)

    d = descriptions if descriptions is not None else getattr(model, "feature_descriptions", None)
    if not isinstance(d, FeatureDescriptions):
        return d
    signature = _signature(model)
    if signature is None or (signature == d._signature and not force):
        return d
    d.stale, d.stale_reason = compare_encoder(d.encoder, model)
    d._signature = signature
    if d.stale and not d._warned:
        d._warned = True
        warnings.warn(d.stale_reason, UserWarning, stacklevel=3)
    return d
