"""Fixtures shared by the test files: tiny saved classifiers, small datasets, a fitted tiny text model.

Nothing touches the network: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not torch.cuda.is_available():  # the GPU's Triton kernels run in Triton's interpreter (read when Triton is imported)
    os.environ.setdefault("TRITON_INTERPRET", "1")

from _tiny_models import IMAGE_ARCHS, TEXT_ARCHS, save_image_classifier, save_text_classifier, word_dataset  # noqa: E402


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """One saved tiny classifier per architecture (3 text labels, 4 image labels)."""
    root = tmp_path_factory.mktemp("tiny")
    out = {arch: save_text_classifier(root / arch, arch, num_labels=3) for arch in TEXT_ARCHS}
    out.update({arch: save_image_classifier(root / arch, arch, num_labels=4) for arch in IMAGE_ARCHS})
    return out


@pytest.fixture(scope="session")
def text_data():
    """A small labelled text dataset: the label is a (noisy) function of the words, so features carry signal."""
    pytest.importorskip("datasets")
    ds = word_dataset(150)
    return ds.select(range(110)), ds.select(range(110, 150))


@pytest.fixture(scope="session")
def image_data():
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    images, labels = [], []
    for i in range(60):
        label = i % 4
        arr = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8)
        arr[..., label % 3] = arr[..., label % 3] // 4 + 64 * label  # class-dependent colour
        images.append(Image.fromarray(arr.numpy()))
        labels.append(label)
    ds = datasets.Dataset.from_dict({"image": images, "label": labels})
    return ds.select(range(44)), ds.select(range(44, 60))


@pytest.fixture(scope="session")
def fitted_text(folders, text_data, tmp_path_factory):
    """The tiny BERT with a head fit at 2 features per class, and its path and cache folder."""
    cache = tmp_path_factory.mktemp("features")
    from hf_sparse import SparseHeadForSequenceClassification

    model = SparseHeadForSequenceClassification.from_pretrained(folders["bert"])
    train, val = text_data
    path = model.fit_sparse_head(
        train, eval_dataset=val, text_column="sentence", features_per_class=2, n_lambdas=12, cache_dir=cache
    )
    return model, path, cache
