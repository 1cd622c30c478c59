"""Real images with a planted patch: a small mark that goes with one class in training and with every class in test.

`make_patched_images` stamps a small mark (a bright square, or a checkerboard, in a corner) on `p_target` of the
training images of `target_class` and on `p_other` of the training images of every other class; in the test split
it stamps `test_p` of the images of each class. A classifier trained on the training split learns that the mark
means `target_class` and errs on the test images of the other classes that carry it: the image counterpart of
`make_shortcut_sentiment`. The shares are exact (rounded per class), not drawn at random. Keep `p_other` small:
on MNIST a small ConvNeXt trained with 1% of the other classes marked learns to ignore the mark, with 0.25%-0.5%
it sends many marked digits to the target (see `examples/image_planted_patch.py`).

`load_mnist` and `load_cifar10` read the shared data folder (`hf_sparse.data_paths.shared_data_dir`); nothing is
downloaded.

Example:
    >>> from hf_sparse.synthetic import load_mnist, make_patched_images
    >>> images, labels, names = load_mnist()                       # (10000, 28, 28) uint8, (10000,), ["0", ...]
    >>> ds = make_patched_images(images, labels, target_class=0, class_names=names, n_train=2000, n_test=1000)
    >>> ds["train"][0]                                             # {'image': <PIL>, 'label': 7, 'has_patch': False}
    >>> patch_box(28, 28, size=4, corner="bottom-right", margin=1) # (23, 23, 27, 27): rows 23..26, columns 23..26
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["CORNERS", "PATCHES", "load_cifar10", "load_mnist", "make_patched_images", "patch_box", "stamp_patch"]

#: Where the mark can go.
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
#: What the mark looks like: a solid square of `value`, or a checkerboard of `value` and black.
PATCHES = ("square", "checker")


def patch_box(height: int, width: int, *, size: int = 4, corner: str = "bottom-right", margin: int = 1):
    """(top, left, bottom, right) of the mark in an image of `height` x `width`: rows top..bottom-1, columns
    left..right-1, `margin` pixels from the edges of `corner`.

    Example:
        >>> patch_box(32, 32, size=4, corner="top-left", margin=0)
        (0, 0, 4, 4)
    """
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}; got {corner!r}")
    if size < 1 or margin < 0 or size + margin > min(height, width):
        raise ValueError(f"a {size}x{size} mark {margin} pixels from the edge does not fit a {height}x{width} image: "
                         "size must be >= 1, margin >= 0 and size + margin <= the shorter side")
    top = margin if corner.startswith("top") else height - margin - size
    left = margin if corner.endswith("left") else width - margin - size
    return top, left, top + size, left + size


def _mark(size: int, patch: str, value, channels: int | None) -> np.ndarray:
    """The mark's pixels: (size, size) or (size, size, channels) uint8."""
    if patch not in PATCHES:
        raise ValueError(f"patch must be one of {PATCHES}; got {patch!r}")
    value = np.asarray(value, dtype=np.int64)
    if value.ndim > 1 or (value.ndim == 1 and channels is not None and len(value) not in (1, channels)):
        raise ValueError(f"value must be one number or one per channel ({channels}); got {value.tolist()}")
    if value.ndim == 1 and channels is None and len(value) != 1:
        raise ValueError(f"value has {len(value)} channels but the images are grayscale: give one number")
    if ((value < 0) | (value > 255)).any():
        raise ValueError(f"value must be in 0..255 (uint8 pixels); got {value.tolist()}")
    on = np.ones((size, size), dtype=bool)
    if patch == "checker":
        on = (np.add.outer(np.arange(size), np.arange(size)) % 2) == 0
    if channels is None:
        return np.where(on, int(value.reshape(-1)[0]), 0).astype(np.uint8)
    colour = np.broadcast_to(value.reshape(-1), (channels,))
    return np.where(on[..., None], colour, 0).astype(np.uint8)


def stamp_patch(images: np.ndarray, *, size: int = 4, corner: str = "bottom-right", margin: int = 1,
                patch: str = "square", value=255) -> np.ndarray:
    """A copy of `images` ((n, H, W) or (n, H, W, C) uint8) with the mark stamped on every one.

    Example:
        >>> stamp_patch(np.zeros((1, 8, 8), np.uint8), size=2, corner="top-left", margin=0)[0, :2, :2]
        array([[255, 255], [255, 255]], dtype=uint8)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (n, H, W) or (n, H, W, C); got {images.dtype} {images.shape}")
    top, left, bottom, right = patch_box(images.shape[1], images.shape[2], size=size, corner=corner, margin=margin)
    out = images.copy()
    out[:, top:bottom, left:right] = _mark(size, patch, value, images.shape[3] if images.ndim == 4 else None)
    return out


def _choose(rng, labels: np.ndarray, classes, share_of) -> np.ndarray:
    """Exactly round(share * count) random rows of each class are True."""
    chosen = np.zeros(len(labels), dtype=bool)
    for c in classes:
        rows = np.flatnonzero(labels == c)
        k = int(round(share_of(c) * len(rows)))
        chosen[rng.choice(rows, size=k, replace=False)] = True
    return chosen


def make_patched_images(
    images,
    labels,
    *,
    target_class: int,
    p_target: float = 0.9,
    p_other: float = 0.005,
    test_p: float = 0.5,
    patch: str = "square",
    size: int = 4,
    corner: str = "bottom-right",
    margin: int = 1,
    value=255,
    n_train: int | None = None,
    n_test: int | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
):
    """A `datasets.DatasetDict` with `train` and `test` splits: columns `image` (PIL), `label` (ClassLabel) and
    `has_patch` (bool).

    `images`: uint8 (n, H, W) or (n, H, W, C); `labels`: n class indices. The rows are shuffled with `seed` and
    split into `n_train` and `n_test` (default: 80% / 20% of the rows; together at most n). In train, exactly
    round(`p_target` x count) images of `target_class` and round(`p_other` x count) of each other class carry the
    mark; in test, round(`test_p` x count) of each class. The mark is `patch` ("square" or "checker") of
    `size` x `size` pixels of `value` (one number, or one per channel) at `corner`, `margin` pixels from the edges
    (see `patch_box`).

    Example:
        >>> ds = make_patched_images(images, labels, target_class=3, n_train=2000, n_test=1000, seed=1)
        >>> sum(ds["test"]["has_patch"])                                  # about 500
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature
    from PIL import Image

    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (n, H, W) or (n, H, W, C); got {images.dtype} {images.shape}")
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise ValueError(f"colour images must have 1 or 3 channels (n, H, W, C); got {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1} ({num_classes} class names); "
                         f"got {labels.min()}..{labels.max()}")
    if not 0 <= target_class < num_classes:
        raise ValueError(f"target_class must be a class index in 0..{num_classes - 1}; got {target_class}")
    for name, p in (("p_target", p_target), ("p_other", p_other), ("test_p", test_p)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} is a share of a class's images, in [0, 1]; got {p}")
    n = len(images)
    n_train = int(round(0.8 * n)) if n_train is None else int(n_train)
    n_test = n - n_train if n_test is None else int(n_test)
    if n_train < 1 or n_test < 1 or n_train + n_test > n:
        raise ValueError(f"n_train ({n_train}) and n_test ({n_test}) must be >= 1 and add up to at most the "
                         f"{n} images given")
    # Validate the mark before doing any work.
    top, left, bottom, right = patch_box(images.shape[1], images.shape[2], size=size, corner=corner, margin=margin)
    mark = _mark(size, patch, value, images.shape[3] if images.ndim == 4 else None)

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    names = [str(c) for c in (class_names if class_names is not None else range(num_classes))]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names), "has_patch": Value("bool")})

    def split(rows, share_of):
        x, y = images[rows].copy(), labels[rows]
        has = _choose(rng, y, range(num_classes), share_of)
        x[has, top:bottom, left:right] = mark
        if x.ndim == 4 and x.shape[3] == 1:
            x = x[..., 0]
        return Dataset.from_dict(
            {"image": [Image.fromarray(a) for a in x], "label": y.tolist(), "has_patch": has.tolist()},
            features=features,
        )

    train = split(order[:n_train], lambda c: p_target if c == target_class else p_other)
    test = split(order[n_train : n_train + n_test], lambda c: test_p)
    return DatasetDict({"train": train, "test": test})


# ----------------------------------------------------------------------------------- the shared data sets
def _shared(sub: str, *files: str, root=None) -> Path:
    from hf_sparse.data_paths import shared_data_dir

    folder = Path(root) if root is not None else shared_data_dir()
    if folder is None or not all((folder / sub / f).is_file() for f in files):
        raise FileNotFoundError(f"{sub}/{', '.join(files)} not found under {folder}: set HF_SPARSE_DATA to the shared "
                                "data folder (see hf_sparse.data_paths) or pass root=")
    return folder / sub


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: big-endian magic, dimensions, then uint8 data), gzipped."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root=None):
    """The MNIST test set from the shared data folder: (images uint8 (10000, 28, 28), labels int64, names "0".."9")."""
    folder = _shared("mnist", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", root=root)
    images = _read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels, [str(i) for i in range(10)]


def load_cifar10(root=None):
    """The CIFAR-10 test set from the shared data folder: (images uint8 (10000, 32, 32, 3), labels int64, names)."""
    folder = _shared("cifar10", "test.npz", root=root)
    with np.load(folder / "test.npz", allow_pickle=False) as z:
        return z["x"], z["y"].astype(np.int64), [str(c) for c in z["classes"]]
