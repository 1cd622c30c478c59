"""hf_sparse: debuggable transformers classifiers with sparse linear heads.

Layers, from the bottom: ``solver`` (elastic-net path on tensors), ``features`` (cached encoder features),
``modeling`` (transformers classes), ``explain``, ``audit``, ``card`` and ``cli``; the public model classes are
composed in ``hf_sparse.models``.

Importing the package is cheap: the model classes (and torch, transformers) load on first use (PEP 562), so
``import hf_sparse.solver`` does not import transformers and ``hf-sparse --help`` does not import torch.

The config is registered with ``AutoConfig`` as soon as transformers loads it, and the model classes with
``AutoModelFor...Classification`` as soon as transformers loads those (or, when it loads them while still importing
something else, when the first ``SparseHeadConfig`` is made), before or after ``import hf_sparse``: so
``AutoModelForSequenceClassification.from_pretrained`` and ``pipeline(...)`` load saved hf_sparse checkpoints after
a plain ``import hf_sparse``.

Example:
    >>> import hf_sparse
    >>> model = hf_sparse.SparseHeadForSequenceClassification.from_pretrained("out")
    >>> hf_sparse.finetune_text_classifier(train_ds, text_column="sentence", out_dir="clf")   # no classifier yet
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

__version__ = "0.1.0"

#: Public name -> the module that defines it (loaded on first access).
_LAZY = {
    "SparseHeadConfig": "hf_sparse.modeling.configuration",
    "SparseHeadForImageClassification": "hf_sparse.models",
    "SparseHeadForSequenceClassification": "hf_sparse.models",
    "SparseLinear": "hf_sparse.modeling.sparse_linear",
    "finetune_text_classifier": "hf_sparse.modeling.finetune",
}

__all__ = [
    "SparseHeadConfig",
    "SparseHeadForImageClassification",
    "SparseHeadForSequenceClassification",
    "SparseLinear",
    "__version__",
    "finetune_text_classifier",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hf_sparse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# ------------------------------------------------------------------------------------- Auto class registration
#: transformers module -> the hf_sparse module whose import registers hf_sparse with it.
_REGISTER_ON = {
    "transformers.models.auto.configuration_auto": "hf_sparse.modeling.configuration",  # AutoConfig
    "transformers.models.auto.modeling_auto": "hf_sparse.models",  # AutoModelFor...Classification, pipelines
}


def _transformers_is_importing(finishing: str = "") -> bool:
    """Whether a transformers module (other than `finishing`) is still being imported."""
    for name, module in list(sys.modules.items()):
        if name.startswith("transformers") and name != finishing:
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return True
    return False


def _register(module_name: str) -> None:
    """Import `module_name` (which registers hf_sparse at its end) unless it is imported or being imported."""
    if module_name in sys.modules:
        return
    try:
        importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - never break the user's transformers import
        warnings.warn(f"hf_sparse could not register its classes with transformers' Auto classes ({err!r}); "
                      f"`import {module_name}` registers them.", RuntimeWarning, stacklevel=2)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of a transformers Auto module, then registers hf_sparse with it."""

    def __init__(self, loader, register: str):
        self._loader, self._register = loader, register

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        if self._register == "hf_sparse.models" and _transformers_is_importing(finishing=module.__name__):
            return  # importing the model classes now could meet a half-imported transformers: see below
        _register(self._register)

    def __getattr__(self, name: str):  # get_source, get_code, ...: the real loader's
        return getattr(self._loader, name)


class _AutoRegistration(importlib.abc.MetaPathFinder):
    """Finds transformers' Auto modules with the other finders and wraps their loader (`_RegisteringLoader`)."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _REGISTER_ON:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RegisteringLoader(spec.loader, _REGISTER_ON[fullname])
                return spec
        return None


if not any(isinstance(finder, _AutoRegistration) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AutoRegistration())
# When transformers loads its Auto model classes in the middle of importing something else (a tokenizer class, the
# pipelines), the model classes are registered later: when the first SparseHeadConfig is made, which every Auto class
# and pipeline does before it looks the model class up.
from .modeling.first_use import on_first_config  # noqa: E402  (pure Python)

on_first_config(lambda: _register("hf_sparse.models"))
for _name, _module in _REGISTER_ON.items():
    if _name in sys.modules:  # transformers' Auto classes were loaded before hf_sparse: register now
        _register(_module)
