"""Explanations of a sparse head: what each class rests on, what drives each feature, why one input got its label.

Example:
    >>> from hf_sparse.explain import class_features, describe_features
    >>> class_features(model)[1].features[:3]          # the positive class's top features, weights and shares
    >>> describe_features(model)[17].top_words[:5]      # the words that drive feature 17
    >>> print(model.explain("a gorgeous, witty film"))
"""

from .attribution import WordAttribution, top_words, word_attributions
from .class_features import ClassFeature, ClassFeatures, class_features
from .descriptions import FeatureDescription, FeatureDescriptions, FeatureExample, describe_features
from .explanation import Contribution, Explanation, explain
from .image_attribution import heatmap_overlay, occlusion_heatmaps

__all__ = [
    "ClassFeature",
    "ClassFeatures",
    "Contribution",
    "Explanation",
    "FeatureDescription",
    "FeatureDescriptions",
    "FeatureExample",
    "WordAttribution",
    "class_features",
    "describe_features",
    "explain",
    "heatmap_overlay",
    "occlusion_heatmaps",
    "top_words",
    "word_attributions",
]
