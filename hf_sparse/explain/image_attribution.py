"""Which image regions drive a sparse head's features: occlusion heatmaps for image models.

A square patch slides over the processed image (`pixel_values`); inside it the pixels are replaced by the image's
own per-channel mean colour, and the drop in each requested feature's activation is recorded. A pixel's heat is the
mean drop over the windows that cover it: positive where hiding the region lowers the feature (the region drives it),
negative where hiding it raises the feature.

Example:
    ```python
    >>> from hf_sparse.explain import occlusion_heatmaps, heatmap_overlay
    >>> heat = occlusion_heatmaps(model, [img1, img2], features=[40, 7])   # (2, 2, H, W), H x W of pixel_values
    >>> heatmap_overlay(img1, heat[0, 0]).save("feature40.png")
    ```
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .attribution import check_features, eval_mode, head_input, model_device

__all__ = ["heatmap_overlay", "occlusion_heatmaps"]


def _window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Window offsets along one axis; the last window always reaches the edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def _pixel_values(model, images, processor) -> torch.Tensor:
    if getattr(model, "modality", "image") != "image":
        raise TypeError(
            f"occlusion_heatmaps needs an image model (SparseHeadForImageClassification); {type(model).__name__} is "
            "a text model: use hf_sparse.explain.word_attributions"
        )
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images  # already processed pixel_values (n, C, H, W)
    if isinstance(images, str) or (isinstance(images, (list, tuple)) and any(isinstance(i, str) for i in images)):
        raise TypeError(
            "occlusion_heatmaps takes images (PIL images or arrays) or a (n, C, H, W) pixel_values tensor, not strings"
        )
    from ..modeling.encode import as_batch_list, processor_inputs

    return processor_inputs(model, as_batch_list(images), processor)["pixel_values"]


@torch.no_grad()
def occlusion_heatmaps(
    model,
    images,
    features: int | Sequence[int],
    *,
    patch: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    processor=None,
    fill: str | float = "mean",
) -> torch.Tensor:
    """Occlusion heatmaps (n_images, len(features), H, W) in the processed image's pixel grid.

    `images`: PIL images or arrays (run through `processor`, default `model.processor`), or a (n, C, H, W)
    `pixel_values` tensor. `patch` defaults to a quarter of the shorter side, `stride` to half the patch.
    `fill="mean"` paints the patch with the image's own per-channel mean (it removes the region's content while
    keeping the image's overall colour, so the drop measures the region, not a colour shift); a number paints that
    value in normalized space (0.0 is the processor's `image_mean`, the training set's mean colour).
    `batch_size` counts occluded images per forward pass.
    """
    features = check_features(model, features)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    pixels = _pixel_values(model, images, processor)
    n, _, height, width = pixels.shape
    patch = patch or max(1, min(height, width) // 4)
    stride = stride or max(1, patch // 2)
    if not (1 <= patch <= min(height, width)) or stride < 1:
        raise ValueError(
            f"patch must be in [1, {min(height, width)}] and stride >= 1; got patch={patch}, stride={stride}"
        )
    if fill == "mean":
        fill_values = pixels.mean(dim=(2, 3))  # (n, C)
    elif isinstance(fill, (int, float)) and not isinstance(fill, bool):
        fill_values = torch.full(pixels.shape[:2], float(fill))
    else:
        raise ValueError(f"fill must be 'mean' or a number; got {fill!r}")

    device = model_device(model)
    dtype = next((p.dtype for p in model.model.parameters() if p.is_floating_point()), pixels.dtype)
    pixels = pixels.to(device=device, dtype=dtype)
    fill_values = fill_values.to(device=device, dtype=dtype)
    windows = [(top, left) for top in _window_starts(height, patch, stride) for left in _window_starts(width, patch, stride)]
    coverage = torch.zeros(height, width)
    for top, left in windows:
        coverage[top : top + patch, left : left + patch] += 1
    heat = torch.zeros(n, len(features), height, width)
    jobs = [(i, top, left) for i in range(n) for top, left in windows]
    with eval_mode(model):
        base = torch.cat([
            head_input(model, {"pixel_values": pixels[s : s + batch_size]})[:, features].float().cpu()
            for s in range(0, n, batch_size)
        ])
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            batch = pixels[[i for i, _, _ in chunk]].clone()
            for b, (i, top, left) in enumerate(chunk):
                batch[b, :, top : top + patch, left : left + patch] = fill_values[i][:, None, None]
            acts = head_input(model, {"pixel_values": batch})[:, features].float().cpu()
            for (i, top, left), act in zip(chunk, acts):
                heat[i, :, top : top + patch, left : left + patch] += (base[i] - act)[:, None, None]
    return heat / coverage


def heatmap_overlay(image, heatmap, *, cmap: str = "RdBu_r", alpha: float = 0.6):
    """`image` (PIL image or HxWx3 array) with `heatmap` (H, W) drawn over it, as an RGB PIL image of the image's size.

    The heatmap is upsampled to the image and scaled by its largest absolute value; with the default diverging
    colour map, red marks regions that drive the feature, blue regions that suppress it, and each pixel's opacity
    grows with |heat| (up to `alpha`), so regions that do not matter keep their colours. If the processor cropped the
    image, pass the cropped image (or the processed one) so that the grids line up.
    """
    import matplotlib
    from PIL import Image

    if not hasattr(image, "convert"):
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    image = image.convert("RGB")
    if isinstance(heatmap, torch.Tensor):
        heatmap = heatmap.detach().float().cpu().numpy()
    heat = np.squeeze(np.asarray(heatmap, dtype=np.float32))
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W); got shape {tuple(np.shape(heatmap))}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize(image.size, Image.BILINEAR), dtype=np.float32)
    scale = float(np.abs(heat).max())
    if scale == 0.0 or not np.isfinite(scale):
        return image.copy()
    signed = heat / scale  # in [-1, 1]
    colour = matplotlib.colormaps[cmap]((signed + 1.0) / 2.0)[..., :3] * 255.0  # no pyplot, so no backend needed
    opacity = (alpha * np.abs(signed))[..., None]
    blended = np.asarray(image, dtype=np.float32) * (1.0 - opacity) + colour * opacity
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
