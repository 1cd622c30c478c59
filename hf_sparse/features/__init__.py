"""Cached encoder features: run a transformers model once over a dataset.

``extract_features`` runs the model over a ``datasets.Dataset`` and caches the
input of its final classification layer (or a pooled hidden layer of a bare
encoder) in a memory-mapped Arrow file keyed by an explicit fingerprint. A
second call with the same inputs runs no forward pass.

Example::

    >>> from hf_sparse.features import extract_features
    >>> feats = extract_features(model, dataset, tokenizer, text_column="sentence")
    >>> feats.features.shape, feats.labels.shape     # (n, d) float32, (n,)
    >>> feats.dataset                                # the cached datasets.Dataset
"""

from .cache import FeatureCache, default_cache_root
from .extract import DEFAULT_SHARD_SIZE, extract_features
from .fingerprint import CACHE_FORMAT_VERSION, features_fingerprint, hash_weights
from .locate import CLASSIFIER_LAYER_NAMES, POOLINGS, FeatureExtractor, FeatureSpec, find_classifier_layer
from .result import FeatureSet

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CLASSIFIER_LAYER_NAMES",
    "DEFAULT_SHARD_SIZE",
    "POOLINGS",
    "FeatureCache",
    "FeatureExtractor",
    "FeatureSet",
    "FeatureSpec",
    "default_cache_root",
    "extract_features",
    "features_fingerprint",
    "find_classifier_layer",
    "hash_weights",
]
