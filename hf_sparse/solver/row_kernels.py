"""The compiled passes over a softmax head's float64 rows (CPU), and the exp and ``x log x`` they are made of.

Each kernel reads a row once and writes nothing but its result (see :mod:`.softmax_rows`, which calls them). numba's
``math.exp`` and ``math.log`` are scalar calls, and one running sum or maximum is a chain of dependent operations:
either keeps a loop scalar. The helpers below split the work into loops that LLVM turns into AVX2 code: the exp's
``2^m`` and a number's exponent are read from the bits of a float64, and sums and maxima run in four lanes. They
stay in this file on purpose: numba's cache keys a kernel on its own file, so a helper inlined from another file
could change while the cached kernels went on using the old one.

Example:
    >>> x = np.array([0.0, -1.0, -2.0]); out, scratch = np.empty(3), np.empty(3)
    >>> top, total = exp_row(x, out, scratch)      # exp(x - max(x)) and its sum
    >>> bool(np.allclose(out, np.exp(x))), round(total, 6)
    (True, 1.503215)
"""

from __future__ import annotations

import math

import numba
import numpy as np

PLAIN, FULL_STEP, BIAS_STEP, FULL_STEP_INTO_STEP = 0, 1, 2, 3  # the loss pass's modes


_BLOCK = 64  # rows per parallel task (each task keeps one row's scratch)
# fused multiply-adds (one rounding where there were two: no less accurate) in the exp polynomial and the sums: the
# passes are bound by the exp's arithmetic (at 20,000 x 1,000, the loss pass 21.9 -> 18.7 ms)
_CONTRACT = {"contract"}


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact (fdlibm's constants)
_LN2_LO = 1.90821492927058770002e-10


_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer, held in the sum's low mantissa bits


@numba.njit(inline="always")
def _exp_split(x, scratch, c):
    """``exp(x)`` for ``x <= 0``, in two parts that vectorize (numba's ``math.exp`` is a scalar call): returns
    ``exp(r)``, ``|r| <= ln 2 / 2``, and writes ``m + 1.5 * 2^52`` to ``scratch[c]`` (``x = m ln 2 + r``), whose bits
    :func:`exp_row` turns into ``2^m`` (the rounding by the added constant, not a float-to-int conversion, which
    kept the loop scalar: 4 times slower). Taylor to degree 13 (truncation below 1e-17): within 1 ulp of libm on
    [-700, 0]; ``x`` below -707 is taken as -707 (``exp`` of it is 1e-307, nothing beside a row's largest entry,
    which is 1)."""
    x = max(x, -707.0)
    shifted = x * _LOG2E + _SHIFTER
    m = shifted - _SHIFTER
    r = (x - m * _LN2_HI) - m * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scratch[c] = shifted
    return p


@numba.njit(inline="always")
def exp_row(x, out, scratch):
    """``out = exp(x - max(x))`` for one row (``scratch``: float64 of its length); returns ``(max(x), sum(out))``."""
    top = _largest(x)
    k = x.shape[0]
    for c in range(k):
        out[c] = _exp_split(x[c] - top, scratch, c)
    bits = scratch.view(np.int64)
    for c in range(k):
        # the low bits hold m + 2^51; shifted into the exponent field (m >= -1021 here) the rest falls off: 2^m
        bits[c] = (bits[c] + 1023) << 52
    for c in range(k):
        out[c] *= scratch[c]
    return top, _sum(out)


# A single running sum or maximum is one chain of dependent operations, at the adder's latency: four interleaved
# lanes (each in row order: the same result on any thread count) made the row pass 13-20% faster at 20,000 x 1,000.

@numba.njit(inline="always")
def _sum(x):
    k = x.shape[0]
    whole = k - k % 4
    s0 = s1 = s2 = s3 = 0.0
    for c in range(0, whole, 4):
        s0 += x[c]
        s1 += x[c + 1]
        s2 += x[c + 2]
        s3 += x[c + 3]
    for c in range(whole, k):
        s0 += x[c]
    return (s0 + s1) + (s2 + s3)


@numba.njit(inline="always")
def _largest(x):
    """The largest entry (comparisons, not ``max``: a NaN is never taken for it, and it stays in ``x``)."""
    k = x.shape[0]
    whole = k - k % 4
    m0 = m1 = m2 = m3 = -np.inf
    for c in range(0, whole, 4):
        m0 = x[c] if x[c] > m0 else m0
        m1 = x[c + 1] if x[c + 1] > m1 else m1
        m2 = x[c + 2] if x[c + 2] > m2 else m2
        m3 = x[c + 3] if x[c + 3] > m3 else m3
    for c in range(whole, k):
        m0 = x[c] if x[c] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


_EXPONENT_ONE = 0x3FF0000000000000  # float64 bits of 1.0: a mantissa under it reads as 1.m
_AS_FLOAT = 0x4330000000000000  # float64 bits of 2^52: an integer j < 2^52 in the low bits reads as 2^52 + j
_TWO_52 = 4503599627370496.0
_TINY = 1e-300  # x log x below it is taken as 0 (|x log x| < 7e-298; subnormals have no exponent field to read)


@numba.njit(inline="always")
def xlogx_row_sum(q, skip, exponents, mantissas):
    """``sum_c q_c log q_c`` over the row ``q``'s entries above 1e-300 but ``q[skip]`` (``skip = -1``: none); ``q`` is
    overwritten (with its terms), ``exponents`` and ``mantissas`` are float64 scratch rows of its length.

    ``log q = e ln 2 + log m`` with ``q = m 2^e``, ``m`` in [0.71, 1.42] (read from ``q``'s bits), and
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``: its odd series to ``s^21`` (truncation
    below 3e-17). Within 3 ulp of ``q log q`` by libm; about 3 times faster than a loop of ``math.log`` calls where
    the calling kernel is compiled with ``error_model="numpy"`` (numba's default checks the division for zero, which
    keeps the loop scalar)."""
    k = q.shape[0]
    for c in range(k):  # x log x is 0 at 0 and taken as 0 below 1e-300 (and NaN stays NaN): log 1 = 0 there
        q[c] = 1.0 if q[c] <= _TINY else q[c]
    if skip >= 0:
        q[skip] = 1.0
    bits, e_bits, m_bits = q.view(np.int64), exponents.view(np.int64), mantissas.view(np.int64)
    for c in range(k):
        e_bits[c] = (bits[c] >> 52) | _AS_FLOAT
        m_bits[c] = (bits[c] & 0x000FFFFFFFFFFFFF) | _EXPONENT_ONE
    for c in range(k):  # a loop of its own: with the sum in it, it did not vectorize
        q[c] = _xlogx(q[c], exponents[c], mantissas[c])
    return _sum(q)


@numba.njit(inline="always")
def _xlogx(x, exponent, m):
    """``x log x`` from ``x``'s biased exponent read as ``2^52 + e + 1023`` and its mantissa read as ``m`` in [1, 2)."""
    e = exponent - (_TWO_52 + 1023.0)
    high = m > 1.4142135623730951
    m = 0.5 * m if high else m
    e = e + 1.0 if high else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    log_m = 2.0 * s + 2.0 * s * z * p
    return x * (e * _LN2_HI + (e * _LN2_LO + log_m))


@numba.njit(inline="always")
def _row_plus_bias(Z, i, s, t, x):
    """``x = Z[i] + t s``, ``s`` a change of the bias (k,); an empty ``s``: ``x = Z[i]`` (the test outside the loops:
    inside, it kept them from vectorizing)."""
    k = x.shape[0]
    if s.shape[0] == k:
        for c in range(k):
            x[c] = Z[i, c] + t * s[c]
    else:
        for c in range(k):
            x[c] = Z[i, c]


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def weighted_loss(Z, S, s, t, mode, labels, weight, P):
    """``sum_i weight_i (logsumexp(z_i) - z_i[label_i])`` at ``z = Z + t S`` (mode 1; mode 3 also writes ``z`` over
    ``S``), ``Z + t s`` with a bias step ``s`` (mode 2), or ``Z`` (mode 0); with ``P`` of ``Z``'s shape,
    ``softmax(z)`` written into it."""
    n, k = Z.shape
    write = P.shape[0] == n
    out = np.zeros(n)
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        x, e, powers = np.empty(k), np.empty(k), np.empty(k)
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            # one loop per mode: a test inside the loop kept it from vectorizing (a third of the pass)
            if mode == 1 or mode == 3:
                for c in range(k):
                    x[c] = Z[i, c] + t * S[i, c]
                if mode == 3:  # the row is in cache: writing it costs ~3% of the pass, a separate Z += t S a third
                    for c in range(k):
                        S[i, c] = x[c]
            else:  # a bias step (mode 2) or none (mode 0, an empty s)
                _row_plus_bias(Z, i, s, t, x)
            top, total = exp_row(x, e, powers)
            out[i] = weight[i] * (math.log(total) + top - x[labels[i]])
            if write:
                scale = 1.0 / total
                for c in range(k):
                    P[i, c] = e[c] * scale
    return out.sum()


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def probabilities(Z, labels, weight, P, R):
    """Row softmax into ``P``; with ``R`` of ``Z``'s shape also ``R = weight (P - onehot(labels))``."""
    n, k = Z.shape
    residual = R.shape[0] == n
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        e, powers = np.empty(k), np.empty(k)
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            _, total = exp_row(Z[i], e, powers)
            scale = 1.0 / total
            for c in range(k):
                P[i, c] = e[c] * scale
            if residual:
                for c in range(k):
                    R[i, c] = weight[i] * P[i, c]
                R[i, labels[i]] -= weight[i]


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def curvatures(P, weight, out):
    """``out = weight p (1 - p)`` from probabilities ``P``, in ``out``'s precision: one pass (torch took three)."""
    n, k = P.shape
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            w = weight[i]
            for c in range(k):
                p = P[i, c]
                out[i, c] = w * p * (1.0 - p)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def probability_sums(Z, s, t, labels, weight, parts):
    """``sum_i weight_i softmax(z_i)`` (k,) and the weighted loss ``sum_i weight_i (logsumexp(z_i) - z_i[label_i])``
    at ``z = Z + t s`` (a bias step ``s``, (k,); an empty ``s``: at ``Z``), in ``parts`` partial sums (each over every
    ``parts``-th block of rows: the same sums on any thread count)."""
    n, k = Z.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    sums = np.zeros((parts, k))
    losses = np.zeros(parts)
    for part in numba.prange(parts):
        x, e, powers = np.empty(k), np.empty(k), np.empty(k)
        for block in range(part, blocks, parts):
            for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
                _row_plus_bias(Z, i, s, t, x)
                top, total = exp_row(x, e, powers)
                losses[part] += weight[i] * (math.log(total) + top - x[labels[i]])
                scale = weight[i] / total
                for c in range(k):
                    sums[part, c] += e[c] * scale
    return sums.sum(0), losses.sum()


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def conjugate_terms(D, Y, a, others):
    """Per row: ``a = -sum_c D Y`` and ``others = sum_c (1 - Y) xlogx(D + Y)`` (``xlogx(0) = 0``)."""
    n, k = D.shape
    for i in numba.prange(n):
        first = 0.0
        rest = 0.0
        for c in range(k):
            y = Y[i, c]
            first -= D[i, c] * y
            q = D[i, c] + y
            if q > 0.0:
                rest += (1.0 - y) * q * math.log(q)
        a[i] = first
        others[i] = rest


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def dual_rows(Z, labels, weight, D, losses, a, others, parts):
    """The gap check's pass over the predictions: ``D = softmax(Z) - onehot(labels)`` written, and per row the
    weighted loss, ``a = 1 - p_label`` and ``others = sum_{c != label} p_c log p_c`` (the conjugate terms of
    :func:`conjugate_terms` for ``D``, with ``log p`` from the logits: no ``log`` call);
    returns the weighted column sums of ``D`` (k,), in ``parts`` partial sums (the same on any thread count)."""
    n, k = Z.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    sums = np.zeros((parts, k))
    for part in numba.prange(parts):
        e, powers = np.empty(k), np.empty(k)
        for block in range(part, blocks, parts):
            for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
                top, total = exp_row(Z[i], e, powers)
                log_total = math.log(total) + top
                y = labels[i]
                losses[i] = weight[i] * (log_total - Z[i, y])
                scale = 1.0 / total
                rest = 0.0
                for c in range(k):
                    q = e[c] * scale
                    D[i, c] = q
                    sums[part, c] += weight[i] * q
                    if c != y:
                        rest += q * (Z[i, c] - log_total)
                q = D[i, y]
                D[i, y] = q - 1.0
                sums[part, y] -= weight[i]
                a[i] = 1.0 - q
                others[i] = rest
    return sums.sum(0)


# numpy's error model: numba's default checks each division for zero, which kept the log's loop scalar
@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT, error_model="numpy")
def shifted_conjugate_terms(D, labels, keep, shift, add, empty, moved, a, others):
    """:func:`conjugate_terms` of the feasible dual point ``keep (D - M) - shift Y + add`` (per class vectors)
    without making it: ``M`` moves each row's mass on the ``empty`` classes (True/False per class) to its own
    class (``moved``, per row; :class:`~.empty_classes.EmptyClassShift`), which leaves nothing on them."""
    n, k = D.shape
    for block in numba.prange((n + _BLOCK - 1) // _BLOCK):
        q, exponents, mantissas = np.empty(k), np.empty(k), np.empty(k)
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            y = labels[i]
            for c in range(k):
                q[c] = add[c] if empty[c] else keep[c] * D[i, c] + add[c]
            a[i] = -(keep[y] * (D[i, y] + moved[i]) - shift[y] + add[y])
            others[i] = xlogx_row_sum(q, y, exponents, mantissas)  # vectorized log: 107 -> 56 ms at 20,000 x 1,000
