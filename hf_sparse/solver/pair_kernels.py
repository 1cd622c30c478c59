"""Products over each class's own free columns on a GPU: Triton kernels, the GPU's twin of :mod:`.class_products`.

At 1,000 classes each class has a few free columns out of the working set's hundreds (at the ImageNet shape's 77th
lambda 3,564 free pairs of 1,693 x 1,000: 0.2%), yet the block solver's GPU code made dense products for them: the
gradient ``R^T X`` and the shared moves' ``P M`` (one ``n m k`` float32 GEMM each, after an ``n x k`` pass for the
residual). These kernels read each row's free pairs alone, sum in float64 (more exact than the GEMM's float32
blocks), and make no ``n x k`` temporary: the residual ``w (P - Y)`` is made in registers from the probabilities and
the labels. Measured on an H200 (2026-11-27, same process, 1.28M rows, 1,700 columns, 1,000 classes, 3,771 free
pairs): the gradient 42 ms against 114 ms, the shared moves' terms 81 against 167 ms. The change of predictions
``X dW^T`` took 121 ms (90 with 32 rows a program) against the GEMM's 89 ms: it stays dense (:data:`MAX_DENSITY`).
The class blocks (:func:`class_grams`) replace a thousand small batched products a build (:data:`MAX_GRAM_SLOTS`).

Used where :meth:`PairKernels.applies`: the working set held on a CUDA device and Triton importable (it comes with
PyTorch's CUDA builds). On a CPU the same kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` set before
Triton is imported: the tests do), slowly: the CPU's solver takes the compiled :class:`~.class_products.ClassPattern`.

Example:
    >>> pairs = PairKernels.from_mask(free)               # free: (k, m) bool, on X's device
    >>> values, sums = pairs.gradient(X, P, labels, w)    # (w (P - Y))^T X at the free pairs, and its column sums
    >>> first, h = pairs.shared_terms(X, P, w)            # the shared moves' slope part and curvature, (m,) each
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import torch

from .class_products import ClassPattern

logger = logging.getLogger(__name__)

_BLOCK_ROWS = 64
_BLOCK_CLASSES = 32
_BLOCK_PAIRS = 32
_BLOCK_COLUMNS = 32
#: programs per launch that the row splits aim for (each sums its rows into its own partial: no atomics, and the
#: same sums on every run)
_TARGET_PROGRAMS = 2048
#: the share of (class, column) pairs free up to which the kernels replace the dense float32 GEMM: measured faster at
#: 0.22% (gradient 2.7x, the shared terms 2.1x; the change of predictions 0.7x, so never), the 1% cut estimated from
#: the H200's bandwidth and float32 rate (``benchmarks/gpu_check.py --pairs-bench`` measures it)
MAX_DENSITY = {"gradient": 0.01, "matvec": 0.0, "curvature": 0.01}


@functools.cache
def _kernels():
    """The jitted kernels, made on first use (Triton imported then: a CPU-only install never needs it)."""
    import triton
    import triton.language as tl

    @triton.jit
    def matvec(X, stride_x, ptr, most, cols, values, bias, out, stride_out, n, k,
               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        classes = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        row_ok = rows < n
        class_ok = classes < k
        start = tl.load(ptr + classes, mask=class_ok, other=0)
        stop = tl.load(ptr + classes + 1, mask=class_ok, other=0)
        x_rows = X + rows.to(tl.int64)[:, None] * stride_x
        acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float64)
        most_here = tl.load(most + tl.program_id(1))  # the most pairs of a class in this block
        s = tl.program_id(0) * 0  # an int32 tensor: a loop-carried value keeps one type
        while s < most_here:
            # the pair's index clamped into the list (at least one pair) and read unmasked: Triton 3.6's layout pass
            # failed on a masked load whose result indexes a second load ("mask type matches ptr type")
            has = start + s < stop
            pair = tl.maximum(tl.minimum(start + s, stop - 1), 0)
            col = tl.load(cols + pair)
            v = tl.where(has, tl.load(values + pair), 0.0)
            x = tl.load(x_rows + col[None, :], mask=row_ok[:, None] & has[None, :], other=0.0)
            acc += x.to(tl.float64) * v[None, :]
            s += 1
        acc += tl.load(bias + classes, mask=class_ok, other=0.0)[None, :]
        tl.store(out + rows.to(tl.int64)[:, None] * stride_out + classes[None, :], acc,
                 mask=row_ok[:, None] & class_ok[None, :])

    @triton.jit
    def gradient(X, stride_x, P, stride_p, labels, weight, pair_classes, pair_cols, partial, n, n_pairs,
                 rows_per_split, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
        pairs = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        split = tl.program_id(1)
        pair_ok = pairs < n_pairs
        c = tl.load(pair_classes + pairs, mask=pair_ok, other=0)
        j = tl.load(pair_cols + pairs, mask=pair_ok, other=0)
        first = split * rows_per_split
        last = tl.minimum(first + rows_per_split, n)
        acc = tl.zeros((BLOCK_P,), dtype=tl.float64)  # summed over each tile of rows (a 2-D one spilled registers)
        a = first
        while a < last:  # while loops: Triton's interpreter (the CPU tests) takes no tensor bounds in range()
            rows = a + tl.arange(0, BLOCK_R)
            row_ok = rows < last
            ok = row_ok[:, None] & pair_ok[None, :]
            r64 = rows.to(tl.int64)[:, None]
            x = tl.load(X + r64 * stride_x + j[None, :], mask=ok, other=0.0).to(tl.float64)
            p = tl.load(P + r64 * stride_p + c[None, :], mask=ok, other=0.0)
            y = tl.load(labels + rows, mask=row_ok, other=-1)
            w = tl.load(weight + rows, mask=row_ok, other=0.0)
            acc += tl.sum(x * ((p - (y[:, None] == c[None, :]).to(tl.float64)) * w[:, None]), axis=0)
            a += BLOCK_R
        tl.store(partial + split.to(tl.int64) * n_pairs + pairs, acc, mask=pair_ok)

    @triton.jit
    def shared_terms(X, stride_x, P, stride_p, weight, ptr, most, classes, partial, n, m, rows_per_split,
                     BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr):
        columns = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
        split = tl.program_id(1)
        column_ok = columns < m
        start = tl.load(ptr + columns, mask=column_ok, other=0)
        stop = tl.load(ptr + columns + 1, mask=column_ok, other=0)
        most_here = tl.load(most + tl.program_id(0))  # the most classes of a column in this block
        first = split * rows_per_split
        last = tl.minimum(first + rows_per_split, n)
        slope = tl.zeros((BLOCK_J,), dtype=tl.float64)
        curvature = tl.zeros((BLOCK_J,), dtype=tl.float64)
        a = first
        while a < last:
            rows = a + tl.arange(0, BLOCK_R)
            row_ok = rows < last
            r64 = rows.to(tl.int64)[:, None]
            q = tl.zeros((BLOCK_R, BLOCK_J), dtype=tl.float64)
            s = tl.program_id(0) * 0
            while s < most_here:
                has = start + s < stop
                c = tl.load(classes + tl.maximum(tl.minimum(start + s, stop - 1), 0))  # as in matvec
                q += tl.load(P + r64 * stride_p + c[None, :], mask=row_ok[:, None] & has[None, :], other=0.0)
                s += 1
            x = tl.load(X + r64 * stride_x + columns[None, :], mask=row_ok[:, None] & column_ok[None, :],
                        other=0.0).to(tl.float64)
            wx = x * tl.load(weight + rows, mask=row_ok, other=0.0)[:, None]
            slope += tl.sum(wx * q, axis=0)
            q = tl.minimum(tl.maximum(q, 0.0), 1.0)
            curvature += tl.sum(wx * x * q * (1.0 - q), axis=0)
            a += BLOCK_R
        tl.store(partial + (split * 2).to(tl.int64) * m + columns, slope, mask=column_ok)
        tl.store(partial + (split * 2 + 1).to(tl.int64) * m + columns, curvature, mask=column_ok)

    @triton.jit
    def class_grams(X, stride_x, P, stride_p, weight, classes, slots, partial, n, m, rows_per_split,
                    QP: tl.constexpr, BLOCK_R: tl.constexpr):
        index = tl.program_id(0)
        split = tl.program_id(1)
        c = tl.load(classes + index)
        slot = tl.load(slots + index * QP + tl.arange(0, QP))  # columns; m: the bias's ones; m + 1: padding
        first = split * rows_per_split
        last = tl.minimum(first + rows_per_split, n)
        acc = tl.zeros((QP, QP), dtype=tl.float32)
        a = first
        while a < last:
            rows = a + tl.arange(0, BLOCK_R)
            row_ok = rows < last
            r64 = rows.to(tl.int64)
            x = tl.load(X + r64[:, None] * stride_x + slot[None, :], mask=row_ok[:, None] & (slot < m)[None, :],
                        other=0.0).to(tl.float32)
            x = tl.where(row_ok[:, None] & (slot == m)[None, :], 1.0, x)
            p = tl.load(P + r64 * stride_p + c, mask=row_ok, other=0.0)
            h = tl.load(weight + rows, mask=row_ok, other=0.0) * p * (1.0 - p)  # the rows' curvature, float64
            x = x * tl.sqrt(tl.maximum(h, 0.0)).to(tl.float32)[:, None]
            acc += tl.dot(tl.trans(x), x, input_precision="ieee")  # float32 products: no TF32 rounding
            a += BLOCK_R
        q = tl.arange(0, QP)
        block = (split * tl.num_programs(0) + index).to(tl.int64) * (QP * QP)  # past 2^31 entries at ~3M rows
        tl.store(partial + block + q[:, None] * QP + q[None, :], acc)

    return matvec, gradient, shared_terms, class_grams


@functools.cache
def available() -> bool:
    """Whether Triton imports here (once; a GPU without it keeps the dense products, and the log says so).
    ``HF_SPARSE_TRITON=0`` in the environment turns the kernels off (the dense products, as before them)."""
    if os.environ.get("HF_SPARSE_TRITON", "1") == "0":
        logger.info("HF_SPARSE_TRITON=0: the block solver's GPU code uses dense products")
        return False
    try:
        _kernels()
    except Exception as error:  # noqa: BLE001 - any import failure means the dense route
        logger.info("Triton is not available (%s): the block solver's GPU code uses dense products", error)
        return False
    return True


def _splits(n: int, blocks: int) -> tuple[int, int]:
    """``(splits, rows per split)``: the rows cut so that ``blocks`` x splits programs are about
    :data:`_TARGET_PROGRAMS`, each split a whole number of row blocks."""
    row_blocks = max(1, -(-n // _BLOCK_ROWS))
    splits = max(1, min(row_blocks, _TARGET_PROGRAMS // max(blocks, 1)))
    rows = -(-row_blocks // splits) * _BLOCK_ROWS
    return -(-n // rows), rows


def _compressed(mask: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ptr, most, cols)``: row ``r``'s True columns are ``cols[ptr[r]:ptr[r + 1]]`` (ascending), and ``most[b]`` the
    most True entries of a row among rows ``[b block, (b + 1) block)``; int64 on mask's device."""
    counts = mask.sum(1)
    ptr = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    padded = torch.nn.functional.pad(counts, (0, (-len(counts)) % block))
    return ptr, padded.view(-1, block).amax(1).contiguous(), mask.nonzero()[:, 1].contiguous()


class PairKernels:
    """The free (class, column) pairs of a working set, and the products over them alone (:mod:`.class_products`'s
    :class:`~.class_products.ClassPattern` API: pairs in the mask's row-major order)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask.to(torch.bool).contiguous()
        self.ptr, self.most, self.cols = _compressed(self.mask, _BLOCK_CLASSES)
        self.pair_classes = torch.repeat_interleave(torch.arange(mask.shape[0], device=mask.device),
                                                    self.ptr.diff())
        self._flat = self.pair_classes * mask.shape[1] + self.cols  # the pairs' places in a (k, m) matrix
        self._by_column = None

    @classmethod
    def from_mask(cls, mask, device: torch.device | str | None = None) -> "PairKernels":
        return cls(torch.as_tensor(mask, device=device))

    @staticmethod
    def applies(X: torch.Tensor | None) -> bool:
        """Whether the kernels run on these columns: held in memory on a CUDA device, rows contiguous, Triton there."""
        return X is not None and X.is_cuda and X.stride(1) == 1 and available()

    @property
    def density(self) -> float:
        return len(self.cols) / max(self.mask.numel(), 1)

    def pays(self, product: str, features: torch.Tensor | None = None) -> bool:
        """Whether the kernel for ``product`` ("gradient", "matvec", "curvature") beats the dense product here
        (``features``: as :meth:`~.class_products.ClassPattern.pays` takes them; a GPU's dense products are BLAS)."""
        return self.mask.numel() > 0 and self.density <= MAX_DENSITY[product]

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """The (k, m) float64 matrix with ``values`` at the free pairs and zeros elsewhere."""
        out = torch.zeros(self.mask.shape, dtype=torch.float64, device=self.mask.device)
        out.view(-1).index_copy_(0, self._flat, values.to(out))  # by index: a boolean mask would wait for the GPU
        return out

    def matvec(self, X: torch.Tensor, W: torch.Tensor, out: torch.Tensor | None = None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """``X W^T`` (n, k) float64 for a ``W`` (k, m) that is zero off the free pairs, plus ``bias`` (k,) if given,
        into ``out`` if given (float64, rows contiguous, overwritten). Sums in float64."""
        n, k = X.shape[0], self.mask.shape[0]
        values = W.to(torch.float64).reshape(-1)[self._flat]  # the pairs' values, by index as in dense()
        shift = torch.zeros(k, dtype=torch.float64, device=X.device) if bias is None else bias.to(
            device=X.device, dtype=torch.float64).contiguous()
        if out is None:
            out = torch.empty(n, k, dtype=torch.float64, device=X.device)
        _check(X, out)
        grid = (max(1, -(-n // _BLOCK_ROWS)), max(1, -(-k // _BLOCK_CLASSES)))
        _kernels()[0][grid](X, X.stride(0), self.ptr, self.most, self.cols, values, shift, out, out.stride(0), n, k,
                            BLOCK_R=_BLOCK_ROWS, BLOCK_C=_BLOCK_CLASSES)
        return out

    def gradient(self, X: torch.Tensor, P: torch.Tensor, labels: torch.Tensor,
                 weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w (P - Y))^T X`` at the free pairs, in the mask's row-major order, and ``w (P - Y)``'s column sums (k,),
        float64, for probabilities ``P`` (n, k) and integer ``labels`` (n,) (this process's rows): the residual made
        in registers, no ``n x k`` array."""
        n, k = P.shape
        _check(X, P)
        labels = labels.to(device=X.device, dtype=torch.int64).contiguous()
        w = weight.to(device=X.device, dtype=torch.float64).contiguous()
        n_pairs = len(self.cols)
        blocks = max(1, -(-n_pairs // _BLOCK_PAIRS))
        splits, rows = _splits(n, blocks)
        partial = torch.empty(splits, n_pairs, dtype=torch.float64, device=X.device)
        if n_pairs:
            _kernels()[1][(blocks, splits)](X, X.stride(0), P, P.stride(0), labels, w, self.pair_classes, self.cols,
                                            partial, n, n_pairs, rows, BLOCK_R=_BLOCK_ROWS, BLOCK_P=_BLOCK_PAIRS)
        sums = w @ P - torch.zeros(k, dtype=torch.float64, device=X.device).index_add_(
            0, labels, w)
        return partial.sum(0), sums

    def shared_terms(self, X: torch.Tensor, P: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per column ``j``, with ``q_ij`` the probability of ``j``'s free classes: ``sum_i w_i x_ij q_ij`` and
        ``sum_i w_i x_ij^2 q_ij (1 - q_ij)`` (``q`` clipped to [0, 1] there), float64 (this process's rows), as
        :meth:`~.class_products.ClassPattern.shared_terms`."""
        n, m = X.shape
        _check(X, P)
        if self._by_column is None:
            self._by_column = _compressed(self.mask.T.contiguous(), _BLOCK_COLUMNS)
        ptr, most, classes = self._by_column
        w = weight.to(device=X.device, dtype=torch.float64).contiguous()
        blocks = max(1, -(-m // _BLOCK_COLUMNS))
        splits, rows = _splits(n, blocks)
        partial = torch.empty(splits, 2, m, dtype=torch.float64, device=X.device)
        _kernels()[2][(blocks, splits)](X, X.stride(0), P, P.stride(0), w, ptr, most, classes, partial, n, m, rows,
                                        BLOCK_R=_BLOCK_ROWS, BLOCK_J=_BLOCK_COLUMNS)
        first, curvature = partial.sum(0)
        return first, curvature


#: class blocks of up to this many slots (bias included, at most 64) come from :func:`class_grams` in the block
#: solver; larger ones from batched products (0: none). On an H200 (2026-11-27, 1.28M rows, 1,000 classes) the
#: batched products were launch-bound: 1,260 launches and 0.37 s a build, 92 s of a 90-lambda path. With the kernel
#: (then one width for all classes) the path took the same steps 1.2-1.4x faster; in a bench whose few 41-slot classes
#: made every class 64 wide it took 1,408 ms against 378, hence one launch per width since (not measured yet)
MAX_GRAM_SLOTS = 64
_GRAM_ROWS_PER_SPLIT = 8192  # rows summed in float32 before the float64 sum over splits (the blocks steer steps)


def class_grams(X: torch.Tensor, P: torch.Tensor, weight: torch.Tensor, slots, sizes, classes) -> torch.Tensor:
    """The class blocks ``[X_F_c, 1]' diag(w p_c (1 - p_c)) [X_F_c, 1]`` of :class:`~.class_blocks.ClassBlocks` for
    ``classes`` (their rows of ``slots``: columns of ``X``, ``m`` for the bias, ``m + 1`` padding; ``sizes`` slots
    used, at most 64), with the curvatures made from the probabilities ``P`` and row weights in the kernel:
    ``(len(classes), q, q)`` float64 on ``X``'s device (this process's rows), ``q`` the widest class's slots rounded up
    to a power of two (16 at least, as ``tl.dot`` needs). One launch per width (16, 32, 64), each class in the
    narrowest that holds it: a class's work grows with its width squared."""
    n, m = X.shape
    _check(X, P)
    sizes = np.asarray(sizes)
    if int(sizes.max()) > 64:
        raise ValueError(f"class blocks of up to 64 slots, not {int(sizes.max())}")
    widths = np.array([max(16, 1 << (max(int(size), 1) - 1).bit_length()) for size in sizes])
    slots = torch.as_tensor(np.asarray(slots), dtype=torch.int64)
    classes = torch.as_tensor(np.asarray(classes), dtype=torch.int64)
    out = torch.zeros(len(sizes), int(widths.max()), int(widths.max()), dtype=torch.float64, device=X.device)
    splits = max(1, -(-n // _GRAM_ROWS_PER_SPLIT))
    rows = -(-n // splits)
    w = weight.to(device=X.device, dtype=torch.float64).contiguous()
    for q in (16, 32, 64):
        pick = np.nonzero(widths == q)[0]
        if not len(pick):
            continue
        padded = torch.full((len(pick), q), m + 1, dtype=torch.int64)
        taken = slots[pick, :q]
        padded[:, :taken.shape[1]] = taken
        partial = torch.empty(splits, len(pick), q, q, dtype=torch.float32, device=X.device)
        _kernels()[3][(len(pick), splits)](X, X.stride(0), P, P.stride(0), w, classes[pick].to(X.device),
                                           padded.to(X.device), partial, n, m, rows, QP=q, BLOCK_R=_BLOCK_ROWS,
                                           num_warps=4 if q <= 32 else 8)
        out[torch.as_tensor(pick, device=X.device), :q, :q] = partial.sum(0, dtype=torch.float64)
    return out


def restricted_products(X: torch.Tensor | None, mask) -> "ClassPattern | PairKernels | None":
    """The products over ``mask``'s free (class, column) pairs for the columns ``X``: compiled kernels on a CPU
    (:class:`~.class_products.ClassPattern`), Triton's on a GPU (:class:`PairKernels`), or None (columns not held in
    memory, or no Triton: the dense products)."""
    if ClassPattern.applies(X):
        return ClassPattern.from_mask(mask)
    if PairKernels.applies(X):
        return PairKernels.from_mask(mask, X.device)
    return None


def _check(X: torch.Tensor, A: torch.Tensor) -> None:
    if X.stride(1) != 1 or A.stride(1) != 1 or A.dtype != torch.float64 or X.shape[0] != A.shape[0]:
        raise ValueError("the kernels take X and a float64 (n, k) array with contiguous rows, the same rows")
