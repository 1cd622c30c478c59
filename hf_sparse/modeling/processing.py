"""The tokenizer or image processor of a sparse-head model: given, or loaded on first use from the model's folder
(or, for a checkpoint saved without one, from its base model's), with the model's own `trust_remote_code`.

Example:
    >>> model.processor(["a fine film"], return_tensors="pt")   # loaded from the checkpoint on first use
    >>> model.processor = tokenizer                              # or set
"""

from __future__ import annotations

import logging
from typing import ClassVar

logger = logging.getLogger(__name__)


class ProcessorMixin:
    """`processor` (mixed into `SparseHeadPreTrainedModel`; `_processor_auto_class` is set by the text and image
    classes)."""

    _processor_auto_class: ClassVar[type]
    _processor = None
    #: (path, revision) to load the processor from on first use, and the base model's as a fallback
    _processor_source: tuple[str, str | None] | None = None
    _fallback_processor_source: tuple[str, str | None] | None = None
    #: whether the model was loaded with trust_remote_code=True: its tokenizer / image processor is loaded the same way
    _trust_remote_code: bool = False

    @property
    def trust_remote_code(self) -> bool:
        """Whether the model was loaded with `trust_remote_code=True` (its processor is loaded the same way)."""
        return bool(self._trust_remote_code)

    @property
    def processor(self):
        """The tokenizer / image processor: given to `fit_sparse_head`, else loaded from the model's folder (or,
        for a checkpoint saved without one, from the base model's), else None."""
        if self._processor is None:
            sources = [self._processor_source, self._fallback_processor_source]
            for source in sources:
                if not source or not source[0]:
                    continue
                try:
                    self._processor = self._load_processor(
                        *source, trust_remote_code=self.trust_remote_code)
                    break
                except (OSError, ValueError, KeyError, TypeError) as err:
                    if "trust_remote_code" in str(err):
                        logger.warning(
                            "The processor at %s needs its own Python code (auto_map), which was not run: load the "
                            "model with trust_remote_code=True to allow it, or set model.processor.", source[0])
                    else:
                        logger.info("no processor at %s: %s", source[0], err)
            self._processor_source = None
            self._fallback_processor_source = None
        return self._processor

    @processor.setter
    def processor(self, value) -> None:
        self._processor = value

    @classmethod
    def _load_processor(cls, path: str, revision: str | None = None, *, trust_remote_code: bool = False):
        # trust_remote_code is always passed: left out, transformers asks on stdin when a processor has an auto_map
        kwargs = {"revision": revision} if revision else {}
        return cls._processor_auto_class.from_pretrained(path, trust_remote_code=bool(trust_remote_code), **kwargs)
