"""Forces the solver's torch code, what a GPU runs, on the CPU (not collected by pytest): no compiled softmax row
passes or row softmax, class-block kernel or restricted class products. ``setattr``: ``monkeypatch.setattr`` in a
test (undone after it), the builtin in a subprocess.

Example:
    >>> force_torch_route(monkeypatch.setattr)
"""

from __future__ import annotations


def force_torch_route(setattr=setattr) -> None:
    from hf_sparse.solver import block_newton, class_products, families, problem

    setattr(problem.Problem, "softmax_rows", lambda self, Z, step=None: None)
    setattr(families, "conjugate_terms", lambda D, Y: None)
    setattr(families, "row_softmax", lambda Z: None)
    setattr(block_newton, "COMPILED_MAX_SLOTS", 0)
    setattr(class_products.ClassPattern, "applies", staticmethod(lambda X: False))
