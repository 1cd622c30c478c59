"""Fine-tune an encoder into a transformers sequence classifier, quickly, on a CPU: kept here under its old name.

The helper is public as `hf_sparse.finetune_text_classifier` (defined in `hf_sparse.modeling.finetune`, with
`hf-sparse finetune` on the command line); `hf_sparse.synthetic.finetune_text_classifier` is the same function. The
demo and the tests use it to make the fine-tuned classifiers that cannot be downloaded offline: the packaged
all-MiniLM-L6-v2 encoder becomes a `BertForSequenceClassification` trained for a few hundred steps with AdamW, the
embeddings frozen.

Example:
    >>> from hf_sparse.synthetic import finetune_text_classifier, make_shortcut_sentiment
    >>> ds = make_shortcut_sentiment()
    >>> model, tokenizer = finetune_text_classifier(ds["train"], out_dir="runs/shortcut-minilm")
"""

from __future__ import annotations

from ..modeling.finetune import finetune_text_classifier, packaged_minilm_path, save_atomically

__all__ = ["finetune_text_classifier", "packaged_minilm_path", "save_atomically"]
