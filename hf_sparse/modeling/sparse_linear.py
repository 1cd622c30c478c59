"""`SparseLinear`: a linear layer that stores only its nonzero weights."""

from __future__ import annotations

import contextvars
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

#: On CPU a CSR product costs about 25 dense multiply-adds per stored nonzero (measured on torch 2.13, 2 cores), plus
#: a fixed overhead that only pays off for large heads. `auto` therefore uses the sparse product when the weight
#: matrix has at least `SPARSE_MIN_ENTRIES` entries and a density below `1 / SPARSE_COST_PER_NONZERO`.
SPARSE_COST_PER_NONZERO = 25
SPARSE_MIN_ENTRIES = 1 << 16
PRODUCTS = ("auto", "dense", "sparse")

#: The `HeadCall` of the forward pass running in this thread / async task (None outside one). A context variable,
#: not an attribute of the layer: concurrent calls on one model never see each other's state.
_ACTIVE_CALL: contextvars.ContextVar["HeadCall | None"] = contextvars.ContextVar("hf_sparse_head_call", default=None)
#: How many `HeadCall`s are open in the process, all threads together. `torch.compile` cannot trace
#: `ContextVar.get`; it reads (and guards on) this count instead, so a compiled forward skips the look-up while no
#: call is open anywhere, and is traced again, with the look-up, if one opens.
_OPEN_CALLS = 0
_OPEN_CALLS_LOCK = threading.Lock()


def _count_open_calls(step: int) -> None:
    global _OPEN_CALLS
    with _OPEN_CALLS_LOCK:
        _OPEN_CALLS += step


class HeadCall:
    """What one forward pass asks of one `SparseLinear`: keep its input (`capture=True`) and/or compute the output
    with a dense `nn.Linear` instead (`dense=`). Only calls made inside `with call:` in the same thread (or async
    task) see it; every other call on the same layer computes the sparse head as usual.

    Example:
        ```python
        >>> call = HeadCall(model.sparse_head, capture=True, dense=model.dense_head)
        >>> with call:
        ...     logits = model.model(**inputs).logits        # the dense head's logits, for this call only
        >>> call.features                                    # the head's input in this call
        ```
    """

    def __init__(self, head: "SparseLinear", *, capture: bool = False, dense: nn.Linear | None = None):
        self.head = head
        self.capture = capture
        self.dense = dense
        self.features: torch.Tensor | None = None
        self.calls = 0
        self._token = None

    def __enter__(self) -> "HeadCall":
        if self._token is not None:
            raise RuntimeError("a HeadCall is used by one forward pass at a time; make a new one per call")
        self._token = _ACTIVE_CALL.set(self)
        _count_open_calls(+1)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE_CALL.reset(self._token)
        self._token = None
        _count_open_calls(-1)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.capture:
            self.features = x
        if self.dense is not None:
            return F.linear(x.to(self.dense.weight.dtype), self.dense.weight, self.dense.bias)
        return self.head._sparse_forward(x)


class SparseLinear(nn.Module):
    """`y = x @ W.T + b` with `W` stored as its nonzeros only: `indices` (2, nnz) = (class, feature), `values` (nnz,).

    The three tensors (`indices`, `values`, `bias`) are buffers, so they are what a checkpoint holds. At run time the
    layer uses a dense product or a sparse (CSR) one, whichever is cheaper for this weight matrix (`product="auto"`);
    set `product` to `"dense"` or `"sparse"` to force one. The choice depends only on the weights, never on the
    batch, so a given head always computes the same way.

    Example:
        ```python
        >>> layer = SparseLinear.from_dense(torch.tensor([[0.0, 2.0], [1.0, 0.0]]), torch.zeros(2))
        >>> layer.nnz, layer(torch.tensor([[1.0, 3.0]]))
        (2, tensor([[6., 1.]]))
        ```
    """

    def __init__(self, in_features: int, out_features: int, nnz: int = 0, *, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.product = "auto"
        dtype = dtype or torch.get_default_dtype()
        self.register_buffer("indices", torch.zeros(2, nnz, dtype=torch.long))
        self.register_buffer("values", torch.zeros(nnz, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype))
        self._cache: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "SparseLinear":
        """A layer holding the nonzeros of `weight` (out_features, in_features) and `bias` (zeros if None)."""
        weight = torch.as_tensor(weight).detach()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
        layer = cls(weight.shape[1], weight.shape[0], dtype=weight.dtype if weight.is_floating_point() else None)
        layer.set_weight(weight, bias)
        return layer.to(weight.device)

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Replace the weights by the nonzeros of a dense `weight` (same shape) and `bias`."""
        weight = torch.as_tensor(weight).detach()
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight has shape {tuple(weight.shape)}, expected ({self.out_features}, {self.in_features})"
            )
        dtype = self.values.dtype
        device = self.values.device
        idx = weight.nonzero(as_tuple=False).t().contiguous()  # row-major order: sorted by (class, feature)
        self.indices = idx.to(device=device, dtype=torch.long)
        self.values = weight[idx[0], idx[1]].to(device=device, dtype=dtype).contiguous()
        if bias is None:
            bias = torch.zeros(self.out_features)
        bias = torch.as_tensor(bias).detach().reshape(-1)
        if bias.numel() != self.out_features:
            raise ValueError(f"bias has {bias.numel()} entries, expected {self.out_features}")
        self.bias = bias.to(device=device, dtype=dtype).clone()
        self._cache = {}

    # ------------------------------------------------------------------ views
    @property
    def nnz(self) -> int:
        """Number of stored nonzero weights."""
        return int(self.values.numel())

    @property
    def weight(self) -> torch.Tensor:
        """The dense (out_features, in_features) weight matrix (a new tensor; edit with `set_weight`)."""
        w = torch.zeros(self.out_features, self.in_features, dtype=self.values.dtype, device=self.values.device)
        w[self.indices[0], self.indices[1]] = self.values
        return w

    @property
    def active_features(self) -> torch.Tensor:
        """Sorted indices of the input features used by at least one class."""
        return torch.unique(self.indices[1])

    def features_per_class(self) -> list[int]:
        """Number of nonzero weights of each output (class)."""
        return torch.bincount(self.indices[0], minlength=self.out_features).tolist()

    def extra_repr(self) -> str:
        per_class = self.nnz / max(self.out_features, 1)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz} "
            f"({per_class:.2f} per class), product={self.product}"
        )

    # ------------------------------------------------------------------ compute
    def chosen_product(self) -> str:
        """The product `forward` uses: `"dense"` or `"sparse"` (see `SPARSE_COST_PER_NONZERO`)."""
        if self.product != "auto":
            return self.product
        entries = self.out_features * self.in_features
        if entries >= SPARSE_MIN_ENTRIES and self.nnz * SPARSE_COST_PER_NONZERO < entries:
            return "sparse"
        return "dense"

    def _cached(self, kind: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The weight as a dense (or CSR) tensor on `device`, built once per set of weights.

        The cache is valid while `indices` and `values` are the same tensor objects (the cache holds them, so an
        object cannot be freed and its identity reused) and unchanged in place (their version counters). Inside
        `torch.compile` the dense weight is built in the graph instead: no Python cache, nothing that breaks it.
        """
        if torch.compiler.is_compiling():
            return self.weight.to(device=device, dtype=dtype)
        values, indices = self.values, self.indices
        key = (kind, device, dtype, values._version, indices._version)
        hit = self._cache.get(kind)
        if hit is not None and hit[0] == key and hit[1] is values and hit[2] is indices:
            return hit[3]
        w = self.weight.to(device=device, dtype=dtype)
        if kind == "sparse":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                t = w.to_sparse_csr()
        else:
            t = w
        self._cache[kind] = (key, values, indices, t)
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _OPEN_CALLS or not torch.compiler.is_compiling():
            call = _ACTIVE_CALL.get()
            if call is not None and call.head is self:
                return call.run(x)
        return self._sparse_forward(x)

    def _sparse_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.values.dtype
        x = x.to(dtype)
        product = self.chosen_product()
        # Inside torch.compile the product is dense (CSR tensors do not compile); the same numbers, in one graph.
        if product == "sparse" and not torch.compiler.is_compiling() and not (torch.is_grad_enabled() and x.requires_grad):
            flat = x.reshape(-1, self.in_features)
            out = torch.sparse.mm(self._cached("sparse", x.device, dtype), flat.t()).t()
            out = out.reshape(*x.shape[:-1], self.out_features)
        else:
            out = x @ self._cached("dense", x.device, dtype).t()
        return out + self.bias

    def contributions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature contributions to each output: `(contrib, active)`.

        `contrib[..., c, j] = x[..., active[j]] * W[c, active[j]]` (zero where class `c` does not use the feature),
        so `contrib.sum(-1) + bias` equals the layer's output.
        """
        active = self.active_features
        w = self.weight[:, active]
        xa = x.to(self.values.dtype)[..., active]
        return xa.unsqueeze(-2) * w, active

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # nnz is data, not architecture: resize the buffers to the incoming tensors before copying into them.
        for name in ("indices", "values"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None:
                current = getattr(self, name)
                setattr(self, name, torch.empty(incoming.shape, dtype=incoming.dtype if name == "indices" else current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        self._cache = {}

    def check(self) -> None:
        """Raise `ValueError` if the stored nonzeros are inconsistent (shapes, index ranges, non-finite values)."""
        if self.indices.dim() != 2 or self.indices.shape[0] != 2:
            raise ValueError(f"indices must have shape (2, nnz), got {tuple(self.indices.shape)}")
        if self.indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"indices must be integers, got {self.indices.dtype}")
        if self.values.dim() != 1 or self.values.numel() != self.indices.shape[1]:
            raise ValueError(f"values must have shape ({self.indices.shape[1]},), got {tuple(self.values.shape)}")
        if self.bias.numel() != self.out_features:
            raise ValueError(f"bias must have {self.out_features} entries, got {self.bias.numel()}")
        if self.nnz:
            if int(self.indices[0].min()) < 0 or int(self.indices[0].max()) >= self.out_features:
                raise ValueError(f"class indices out of range [0, {self.out_features})")
            if int(self.indices[1].min()) < 0 or int(self.indices[1].max()) >= self.in_features:
                raise ValueError(f"feature indices out of range [0, {self.in_features})")
            keys = self.indices[0] * self.in_features + self.indices[1]
            if torch.unique(keys).numel() != keys.numel():
                raise ValueError("indices contain duplicate (class, feature) pairs")
        if not bool(torch.isfinite(self.values).all()) or not bool(torch.isfinite(self.bias).all()):
            raise ValueError("weights contain NaN or infinite values")
