"""The sparse GLM path solver: pure tensors in, a regularization path out.

It knows nothing of transformers or datasets, and can be used (and benchmarked)
on any feature matrix.

Example:
    >>> from hf_sparse.solver import fit_path, RegularizationPath
    >>> path = fit_path(X, y, family="multinomial", alpha=0.99, X_val=X_val, y_val=y_val)
    >>> i = path.select(features_per_class=5)
    >>> path.selected.weight.shape   # (k, d), raw feature space
"""

from .fit import fit_path
from .path import PathPoint, RegularizationPath

__all__ = ["fit_path", "RegularizationPath", "PathPoint"]
