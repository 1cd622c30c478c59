"""The card's README.md on disk: the hf_sparse part of the text sits between two markers, so an existing README
is updated in place (`merge_card`: the user's other text and metadata keys kept, hf_sparse's block and keys
replaced) and written atomically (`write_readme`).

Example:
    >>> write_readme("out", create_model_card(model).content)   # out/README.md, merged with any card already there
    PosixPath('out/README.md')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BEGIN, END = "<!-- hf_sparse:begin", "<!-- hf_sparse:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)


def merge_card(existing: str, generated: str) -> str:
    """Replace the hf_sparse block of `existing` with `generated`'s, keep the rest; merge the YAML metadata."""
    from huggingface_hub import ModelCard, ModelCardData

    old, new = ModelCard(existing), ModelCard(generated)
    data = old.data.to_dict()
    data.update({k: v for k, v in new.data.to_dict().items() if v is not None})
    block = _BLOCK.search(new.text).group(0)
    body = _BLOCK.sub(lambda _: block, old.text, count=1) if _BLOCK.search(old.text) else old.text.rstrip() + "\n\n" + block
    return f"---\n{ModelCardData(**data).to_yaml()}\n---\n{body}"



def write_readme(directory: str | os.PathLike, text: str) -> Path:
    """Write `text` as `directory`/README.md, merged into the README already there (`merge_card`), through a
    temporary file so a reader never sees half a card; returns the README's path.

    Example:
        >>> write_readme("out", text)
        PosixPath('out/README.md')
    """
    readme = Path(directory) / "README.md"
    if readme.is_file():
        text = merge_card(readme.read_text(encoding="utf-8"), text)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
    return readme
