"""Remote-code files of a checkpoint: `auto_map` in config.json and two small modules that import the classes from
the installed hf_sparse, so `AutoConfig` / `AutoModelFor...Classification` / `pipeline(...)` load a checkpoint with
`trust_remote_code=True` without the caller importing hf_sparse (as Hub visitors do). Without hf_sparse installed,
the modules raise an `ImportError` that says `pip install hf_sparse`.

The modules hold no model code: they only re-export `hf_sparse.models`, so what runs is the installed package.
After `import hf_sparse` the Auto classes use the registered local classes and ignore `auto_map`.

Example:
    >>> from transformers import AutoModelForSequenceClassification
    >>> model = AutoModelForSequenceClassification.from_pretrained("out", trust_remote_code=True)  # no import hf_sparse
"""

from __future__ import annotations

import os
from pathlib import Path

from ..constants import CONFIG_NAME

CONFIGURATION_FILE = "configuration_hf_sparse.py"
MODELING_FILE = "modeling_hf_sparse.py"
#: The remote-code files every checkpoint carries (listed in its sha256 manifest).
REMOTE_CODE_FILES = (CONFIGURATION_FILE, MODELING_FILE)

#: The Auto class of each modality's model class.
_AUTO_MODEL = {
    "text": ("AutoModelForSequenceClassification", "SparseHeadForSequenceClassification"),
    "image": ("AutoModelForImageClassification", "SparseHeadForImageClassification"),
}

_IMPORT_GUARD = '''\
try:
    from hf_sparse.models import {names}
except ImportError as err:
    if (err.name or "hf_sparse").partition(".")[0] != "hf_sparse":
        raise  # hf_sparse is installed but one of its own dependencies is missing: show that error
    raise ImportError(
        "This checkpoint is an hf_sparse model (a transformers classifier with a sparse final layer): loading it "
        "needs the hf_sparse package, which is not installed. Run `pip install hf_sparse` (version >= {version}); "
        "then `import hf_sparse` is enough and trust_remote_code is not needed."
    ) from err
'''

_TEMPLATES = {
    CONFIGURATION_FILE: '''\
"""hf_sparse checkpoint config (remote code): re-exports the config class of the installed hf_sparse package.

Written by hf_sparse {version}; holds no model code. See https://pypi.org/project/hf_sparse/.
"""

{guard}
__all__ = ["SparseHeadConfig"]
''',
    MODELING_FILE: '''\
"""hf_sparse checkpoint model classes (remote code): re-exports the model classes of the installed hf_sparse package.

Written by hf_sparse {version}; holds no model code. See https://pypi.org/project/hf_sparse/.
"""

{guard}
__all__ = ["SparseHeadConfig", "SparseHeadForImageClassification", "SparseHeadForSequenceClassification"]
''',
}


def remote_code_sources(version: str | None = None) -> dict[str, str]:
    """The text of each remote-code file (file name -> source).

    Example:
        >>> "from hf_sparse.models import SparseHeadConfig" in remote_code_sources()["configuration_hf_sparse.py"]
        True
    """
    if version is None:
        from .. import __version__ as version
    sources = {}
    for name, names in ((CONFIGURATION_FILE, "SparseHeadConfig"),
                        (MODELING_FILE, "SparseHeadConfig, SparseHeadForImageClassification, "
                                        "SparseHeadForSequenceClassification")):
        guard = _IMPORT_GUARD.format(names=names, version=version)
        sources[name] = _TEMPLATES[name].format(version=version, guard=guard)
    return sources


def auto_map(modality: str | None) -> dict[str, str]:
    """The `auto_map` of a checkpoint of `modality` ("text" or "image"; None gives both model classes).

    Example:
        >>> auto_map("text")["AutoModelForSequenceClassification"]
        'modeling_hf_sparse.SparseHeadForSequenceClassification'
    """
    mapping = {"AutoConfig": f"{Path(CONFIGURATION_FILE).stem}.SparseHeadConfig"}
    for kind, (auto, cls) in _AUTO_MODEL.items():
        if modality in (None, kind):
            mapping[auto] = f"{Path(MODELING_FILE).stem}.{cls}"
    return mapping


def write_remote_code(directory: str | os.PathLike) -> list[str]:
    """Write the remote-code files into `directory`; returns their names.

    Example:
        >>> write_remote_code("out")
        ['configuration_hf_sparse.py', 'modeling_hf_sparse.py']
    """
    directory = Path(directory)
    for name, source in remote_code_sources().items():
        (directory / name).write_text(source, encoding="utf-8")
    return list(REMOTE_CODE_FILES)


def save_config(config, directory: str | os.PathLike) -> str:
    """Write `config` to `directory/config.json` with this checkpoint's `auto_map`; returns the file name.

    Unlike `config.save_pretrained`, it never copies the source file of the config class into the folder (which
    transformers does once the class was loaded through remote code): the remote-code files are `write_remote_code`'s.
    """
    config.auto_map = auto_map(getattr(config, "modality", None))
    if hasattr(config, "validate"):
        config.validate()
    config.to_json_file(os.path.join(str(directory), CONFIG_NAME), use_diff=True)
    return CONFIG_NAME
