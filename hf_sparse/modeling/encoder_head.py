"""A pretrained encoder with no classification head, made into an ordinary classifier: encoder + pooling + linear.

`SparseHeadForSequenceClassification.from_encoder` / `SparseHeadForImageClassification.from_encoder` wrap a bare
encoder (`BertModel`, `ViTModel`, `ConvNextModel`, ...; e.g. the packaged all-MiniLM-L6-v2) in an
`EncoderForSequenceClassification` / `EncoderForImageClassification`. The rest of hf_sparse then sees a classifier
like any other: its final `nn.Linear` is `classifier`, whose input (the pooled encoder output) is the feature
vector that `fit_sparse_head` caches and the sparse head reads.

Pooling (`POOLINGS`):

- `"mean"`: text: the mean of the last hidden state over the tokens the attention mask keeps (padding excluded,
  special tokens included, as sentence-transformers does); ViT-style images: the mean over the patch tokens (the
  CLS / distillation / register tokens excluded); convolutional encoders (ConvNeXt, ResNet: feature maps
  (batch, channels, height, width)): the model's own `pooler_output` (global average pooling, followed for
  ConvNeXt by its final layer norm: exactly what its image classifier reads), else the spatial mean.
- `"cls"`: the first token of the last hidden state (the CLS token); an error for encoders without one.
- `"pooler"`: the encoder's `pooler_output` (BERT's tanh pooler, ViT's pooler, ConvNeXt's pooled norm).

The `classifier` starts at zero weights and zero bias: it is a placeholder until `fit_sparse_head` installs a
sparse head (a dense head of zeros predicts every class with equal probability).

Example:
    ```python
    >>> from transformers import AutoModel
    >>> clf = encoder_classifier(AutoModel.from_pretrained(path), modality="text", pooling="mean",
    ...                          id2label={0: "negative", 1: "positive"})
    >>> clf(**tokenizer(["a fine film"], return_tensors="pt")).logits     # zeros until a head is installed
    ```
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput, SequenceClassifierOutput

#: Ways of pooling the encoder's output into one feature vector per input.
POOLINGS = ("mean", "cls", "pooler")
#: The default pooling per modality.
DEFAULT_POOLING = {"text": "mean", "image": "cls"}
#: Marks an hf_sparse config whose base model is a bare encoder (`SparseHeadConfig.base_kind`).
BASE_KIND_ENCODER = "encoder"
#: Name of the linear layer on top of the pooled output (the head that becomes sparse).
HEAD_NAME = "classifier"


def check_pooling(pooling: str | None, modality: str) -> str:
    """`pooling`, or the modality's default for None; a clear error for anything else."""
    if pooling is None:
        return DEFAULT_POOLING[modality]
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS} (e.g. pooling='mean').")
    return pooling


def hidden_size_of(config) -> int:
    """Width of the encoder's output: `hidden_size`, else the last of `hidden_sizes` (ConvNeXt, ResNet)."""
    size = getattr(config, "hidden_size", None)
    if isinstance(size, int) and size > 0:
        return size
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    raise ValueError(
        f"Cannot tell the output width of a {type(config).__name__} encoder (no hidden_size or hidden_sizes in its "
        "config)."
    )


def special_token_count(encoder: nn.Module) -> int:
    """Number of leading non-patch tokens (CLS, distillation, registers) of a ViT-style encoder; 0 for others."""
    count = 0
    for name, param in encoder.named_parameters():
        leaf = name.rpartition(".")[2]
        if leaf in ("cls_token", "distillation_token"):
            count += 1
        elif leaf == "register_tokens":
            count += int(param.shape[1]) if param.dim() == 3 else int(param.shape[0])
    return count


def _encoder_inputs(encoder: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs the encoder's forward takes (None dropped; e.g. token_type_ids for DistilBERT)."""
    params = inspect.signature(encoder.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in inputs.items():
        if value is None:
            continue
        if key in params or (takes_any and key not in ("token_type_ids", "position_ids")):
            out[key] = value
    return out


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss transformers' classifiers use: MSE (regression), cross-entropy, or BCE (multi-label)."""
    num_labels = config.num_labels
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        fn = nn.MSELoss()
        return fn(logits.squeeze(), labels.squeeze().to(logits.dtype)) if num_labels == 1 else fn(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        return nn.functional.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class EncoderClassifier(PreTrainedModel):
    """A bare encoder, a pooling of its output, and a linear `classifier`: what `from_encoder` wraps.

    `config` is a copy of the encoder's config carrying the label maps (`num_labels`, `id2label`, `label2id`,
    `problem_type`); `pooling` is one of `POOLINGS`.
    """

    base_model_prefix = "encoder"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _output_class: ClassVar[type] = SequenceClassifierOutput
    modality: ClassVar[str] = ""

    def __init__(self, config, encoder: PreTrainedModel | None = None, pooling: str | None = None):
        super().__init__(config)
        if encoder is None:
            from transformers import AutoModel

            dtype = getattr(config, "dtype", None)
            encoder = AutoModel.from_config(
                copy.deepcopy(config), **({"dtype": dtype} if isinstance(dtype, torch.dtype) else {})
            )
        if getattr(encoder, "main_input_name", None) != self.main_input_name:
            raise ValueError(
                f"{type(encoder).__name__} takes {getattr(encoder, 'main_input_name', None)!r} inputs, not "
                f"{self.main_input_name!r}: it is not a {self.modality} encoder."
            )
        self.pooling = check_pooling(pooling, self.modality)
        self.encoder = encoder
        self.n_special_tokens = special_token_count(encoder) if self.modality == "image" else 0
        if self.pooling == "cls" and self.modality == "image" and self.n_special_tokens == 0:
            raise ValueError(
                f"pooling='cls': {type(encoder).__name__} has no CLS token (its output is feature maps or patch "
                "tokens only); use pooling='mean'."
            )
        weight = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        self.classifier = nn.Linear(
            hidden_size_of(config), config.num_labels,
            dtype=weight.dtype if weight is not None else None,
            device=weight.device if weight is not None else None,
        )
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
        self.post_init()

    def _init_weights(self, module):
        # The encoder is pretrained and the classifier is a documented zero placeholder: nothing to initialize.
        return

    def init_weights(self):
        return

    def pool(self, out, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One (batch, hidden) feature vector per input from the encoder's output (see the module docstring)."""
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ValueError(
                    f"{type(self.encoder).__name__} returns no pooler_output (no pooling layer); use pooling='mean' or 'cls'."
                )
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # convolutional feature maps (batch, channels, height, width)
            if self.pooling == "cls":
                raise ValueError("pooling='cls' needs a token sequence; this encoder gives feature maps. Use 'mean'.")
            pooled = getattr(out, "pooler_output", None)
            return pooled.flatten(1) if pooled is not None else hidden.mean(dim=(2, 3))
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.modality == "image":
            return hidden[:, self.n_special_tokens :].mean(dim=1)
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def _run(self, inputs: dict[str, Any], attention_mask, labels, return_dict):
        out = self.encoder(**_encoder_inputs(self.encoder, inputs), return_dict=True)
        logits = self.classifier(self.pool(out, attention_mask))
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        result = self._output_class(
            loss=loss,
            logits=logits,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )
        return result if return_dict is not False else result.to_tuple()


class EncoderForSequenceClassification(EncoderClassifier):
    """A text encoder (BERT, DistilBERT, RoBERTa, MPNet, ...) + pooling + a linear `classifier`."""

    main_input_name = "input_ids"
    modality = "text"
    _output_class = SequenceClassifierOutput

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return self._run(inputs, attention_mask, labels, return_dict)


class EncoderForImageClassification(EncoderClassifier):
    """An image encoder (ViT, DeiT, DINOv2, ConvNeXt, ResNet, ...) + pooling + a linear `classifier`."""

    main_input_name = "pixel_values"
    modality = "image"
    _output_class = ImageClassifierOutput

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        inputs = dict(pixel_values=pixel_values, output_attentions=output_attentions,
                      output_hidden_states=output_hidden_states)
        return self._run(inputs, None, labels, return_dict)


ENCODER_CLASSIFIERS: dict[str, type[EncoderClassifier]] = {
    "text": EncoderForSequenceClassification,
    "image": EncoderForImageClassification,
}


def label_maps(num_labels: int | None, id2label: dict | None, label2id: dict | None) -> tuple[dict[int, str], dict[str, int]]:
    """`(id2label, label2id)` from whichever of the three is given; `LABEL_i` names when only a number is."""
    if id2label is None and label2id is not None:
        id2label = {int(i): str(name) for name, i in label2id.items()}
    if id2label is not None:
        if isinstance(id2label, (list, tuple)):
            id2label = dict(enumerate(id2label))
        id2label = {int(i): str(name) for i, name in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"id2label must map the class ids 0..k-1 to names; got ids {sorted(id2label)}.")
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} but id2label names {len(id2label)} labels: {id2label}.")
        if len(set(id2label.values())) != len(id2label):
            raise ValueError(f"id2label has repeated names: {id2label}.")
    elif num_labels is not None:
        if int(num_labels) != num_labels or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}.")
        id2label = {i: f"LABEL_{i}" for i in range(int(num_labels))}
    else:
        raise ValueError(
            "from_encoder needs the labels: pass num_labels= (e.g. 2) or id2label= (e.g. {0: 'negative', 1: 'positive'})."
        )
    computed = {name: i for i, name in id2label.items()}
    if label2id is not None and {str(k): int(v) for k, v in label2id.items()} != computed:
        raise ValueError(f"label2id {label2id} does not invert id2label {id2label}.")
    return id2label, computed


def encoder_classifier(
    encoder: PreTrainedModel,
    *,
    modality: str,
    pooling: str | None = None,
    id2label: dict[int, str],
    problem_type: str | None = None,
) -> EncoderClassifier:
    """Wrap a loaded bare encoder in the `EncoderClassifier` of `modality` (its config is copied, not changed)."""
    config = copy.deepcopy(encoder.config)
    config.num_labels = len(id2label)
    config.id2label = dict(id2label)
    config.label2id = {name: i for i, name in id2label.items()}
    if problem_type is not None:
        config.problem_type = problem_type
    return ENCODER_CLASSIFIERS[modality](config, encoder=encoder, pooling=pooling)
