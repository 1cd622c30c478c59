"""What drives each described feature: the word-attribution pass over its most activating texts (the words whose
removal lowers it most, `attribution.word_attributions`), and the occlusion heatmaps of its most activating images
(`image_attribution.occlusion_heatmaps`), for `describe_features`.

The word pass attributes the union of every feature's top texts once, for all features at once, in chunks of about
`ATTRIBUTION_CHUNK_WORDS` words so that its progress bar moves; chunking changes no score beyond float rounding.

Example:
    >>> _word_chunks(["a b", "c d e", "f"], words=4)     # (start, stop) runs of texts
    [(0, 2), (2, 3)]
"""

from __future__ import annotations

import torch

#: The folder (beside the model) of the thumbnails and heatmaps of image models' descriptions.
IMAGES_DIR = "feature_images"


def _thumbnail(image, size: int = 96):
    """`image` in RGB, shrunk to fit a `size` x `size` square (aspect kept)."""
    image = image.convert("RGB")
    image.thumbnail((size, size))
    return image


#: The word-attribution pass of `describe_features` runs in chunks of texts holding about this many words (one
#: occluded variant per word: 8 batches of 64), so that its progress bar moves every few seconds.
ATTRIBUTION_CHUNK_WORDS = 512


def _word_chunks(texts: list[str], words: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive `texts` of about `words` (default `ATTRIBUTION_CHUNK_WORDS`) words and
    texts (a text counts its whitespace-separated words plus one), at least one text each.

    Example:
        >>> _word_chunks(["a b", "c d e", "f"], words=4)
        [(0, 2), (2, 3)]
    """
    words = ATTRIBUTION_CHUNK_WORDS if words is None else words
    chunks, start, count = [], 0, 0
    for i, text in enumerate(texts):
        count += len(text.split()) + 1  # its words and the full text
        if count >= words:
            chunks.append((start, i + 1))
            start, count = i + 1, 0
    if start < len(texts):
        chunks.append((start, len(texts)))
    return chunks


def add_top_words(model, out, order, dataset, rows, column, n_examples, method, progress=False, *,
                  chunk_words: int | None = None):
    """Set `top_words` of every description in `out` ({feature: FeatureDescription}): word attributions
    (`method`: "occlusion" or "gradient") over each feature's `n_examples` most activating texts (`order[j][0]`:
    positions of its top examples; the texts are `dataset[rows[i]][column]`), in chunks of `chunk_words` words
    (default `ATTRIBUTION_CHUNK_WORDS`).

    Example:
        >>> add_top_words(model, out, order, dataset, rows, "sentence", 20, "occlusion")
        >>> out[17].top_words[:2]
        [('witty', 0.82, 6), ('gorgeous', 0.41, 4)]
    """
    from tqdm.auto import tqdm

    from .attribution import top_words, word_attributions

    # One attribution run over the union of every feature's top examples, for all features at once, in chunks of
    # texts for the progress bar (each text is attributed on its own: chunking changes no score beyond rounding).
    wanted = sorted({i for top, _ in order.values() for i in top[:n_examples]})
    if not wanted:
        return
    texts = [str(dataset[int(rows[i])][column]) for i in wanted]
    features = sorted(order)
    attributions = []
    desc = f"describing features: word {method}"
    with tqdm(total=len(texts), desc=desc, unit="texts", disable=not progress) as bar, torch.enable_grad():
        for start, stop in _word_chunks(texts, chunk_words):
            attributions += word_attributions(model, texts[start:stop], features, method=method)
            bar.update(stop - start)
    position = {i: p for p, i in enumerate(wanted)}
    for j in features:
        mine = [attributions[position[i]] for i in order[j][0][:n_examples]]
        out[j].top_words = [(w, float(s), int(n)) for w, s, n in top_words(mine, j, k=10)]


def add_heatmaps(model, out, order, dataset, rows, column, n_heatmaps, progress=False):
    """Occlusion heatmaps of each feature's `n_heatmaps` most activating images, overlaid on them: kept in
    `out.pending_images` (written by `FeatureDescriptions.save`) and named in the top examples' `heatmap`.

    Example:
        >>> add_heatmaps(model, out, order, dataset, rows, "image", 3)
        >>> out[17].top_examples[0].heatmap
        'feature_images/feature_17_heatmap_0.png'
    """
    from tqdm.auto import tqdm

    from .image_attribution import heatmap_overlay, occlusion_heatmaps

    total = sum(len(top[:n_heatmaps]) for top, _ in order.values())
    bar = tqdm(total=total, desc="describing features: occlusion heatmaps", unit="images", disable=not progress)
    for j, (top, _) in order.items():
        chosen = top[:n_heatmaps]
        if not chosen:
            continue
        images = [dataset[int(rows[i])][column].convert("RGB") for i in chosen]
        with torch.enable_grad():
            maps = occlusion_heatmaps(model, images, [j])
        bar.update(len(chosen))
        for rank, (image, heat) in enumerate(zip(images, maps[:, 0])):
            name = f"{IMAGES_DIR}/feature_{j}_heatmap_{rank}.png"
            out.pending_images[name] = _thumbnail(heatmap_overlay(image, heat), 128)
            if rank < len(out[j].top_examples):
                out[j].top_examples[rank].heatmap = name
    bar.close()
