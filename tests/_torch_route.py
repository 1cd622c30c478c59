"""Forces the solver's torch code, what a GPU runs, on the CPU (not collected by pytest): no compiled softmax row
passes or row softmax, class-block kernel or restricted class products; and the GPU's Triton kernels on these CPU
tensors (in Triton's interpreter). ``setattr``: ``monkeypatch.setattr`` in a test (undone after it), the builtin in a
subprocess.

Example:
    >>> force_torch_route(monkeypatch.setattr)
"""

from __future__ import annotations


def force_torch_route(setattr=setattr) -> None:
    from hf_sparse.solver import class_blocks, class_products, families, problem

    setattr(problem.Problem, "softmax_rows", lambda self, Z, step=None: None)
    setattr(families, "conjugate_terms", lambda D, Y: None)
    setattr(families, "row_softmax", lambda Z: None)
    setattr(class_blocks, "COMPILED_MAX_SLOTS", 0)
    setattr(class_products.ClassPattern, "applies", staticmethod(lambda X: False))


def force_pair_kernels(setattr=setattr, gram_slots: int = 64) -> None:
    """The block solver's Triton kernels (``solver/pair_kernels.py``) on CPU tensors, at every share of pairs free,
    the class blocks up to ``gram_slots`` slots from theirs (with TRITON_INTERPRET=1: Triton's interpreter)."""
    from hf_sparse.solver import pair_kernels

    setattr(pair_kernels.PairKernels, "applies", staticmethod(lambda X: X is not None and pair_kernels.available()))
    setattr(pair_kernels, "MAX_DENSITY", dict.fromkeys(pair_kernels.MAX_DENSITY, 1.0))
    setattr(pair_kernels, "MAX_GRAM_SLOTS", gram_slots)
