"""hf_sparse: debuggable transformers classifiers with sparse linear heads.

Layers, from the bottom: ``solver`` (elastic-net path on tensors), ``features``
(cached encoder features), ``modeling`` (transformers classes), ``explain``,
``audit``, ``card`` and ``cli``.
"""

__version__ = "0.1.0"
