"""Paths given on the command line: is it a local path or a Hub id, does it exist, can the output be written.

Output folders and files are checked before any long work starts, so that a fit never fails at the very end.

Example:
    >>> check_output_free("runs/sst2-sparse", "--output", overwrite=False, inputs={"MODEL": "my-bert"})
    >>> out = prepare_output_dir("runs/sst2-sparse", "--output")   # created, and a probe file written and removed
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CLIError

_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
_PROBE = ".hf_sparse_write_check."


def looks_local(source: str, local_suffixes: tuple[str, ...] = ()) -> bool:
    """True where `source` exists, or can only be a path (``./x``, ``/x``, ``~/x``, a known file suffix); Hub ids
    look like ``name`` or ``owner/name``."""
    if os.path.exists(os.path.expanduser(source)) or source in (".", ".."):
        return True
    if source.startswith(_LOCAL_PREFIXES) or source.endswith("/") or source.count("/") > 1 or "\\" in source:
        return True
    return bool(local_suffixes) and source.lower().endswith(local_suffixes)


def prepare_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create the folder `path` (with parents) and check a file can be written in it; a `CLIError` otherwise."""
    directory = Path(path).expanduser()
    if directory.exists() and not directory.is_dir():
        raise CLIError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    blocking = next((p for p in [directory, *directory.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CLIError(f"cannot create {flag} {path}: {blocking} is a file, not a folder; choose another {flag}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create {flag} {path}: {err.strerror or err}; choose another {flag}") from err
    probe = directory / f"{_PROBE}{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise CLIError(f"cannot write to {flag} {path}: {err.strerror or err}; choose a writable {flag}") from err
    return directory


def check_output_free(path: str | os.PathLike, flag: str, *, overwrite: bool,
                      inputs: dict[str, str] | None = None) -> None:
    """Refuse an output folder that is one of `inputs` (``{what: path}``, e.g. the model a fit reads), or that
    already holds files unless `overwrite` (``--overwrite``): a run never replaces the user's files unasked.

    Example:
        >>> check_output_free("runs/new", "--output", overwrite=False, inputs={"MODEL": "my-bert"})
    """
    directory = Path(path).expanduser()
    for what, source in (inputs or {}).items():
        source_path = Path(str(source)).expanduser()
        if directory.is_dir() and source_path.is_dir() and os.path.samefile(directory, source_path):
            raise CLIError(
                f"{flag} {path} is the folder of {what} {source}: writing there would overwrite it. Choose another "
                f"{flag}"
            )
    if overwrite or not directory.is_dir():
        return
    entries = sorted(p.name for p in directory.iterdir() if not p.name.startswith(_PROBE))  # other ranks' probes
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise CLIError(
            f"{flag} {path} is not empty (it holds {shown}): choose a new or empty folder, or pass --overwrite to "
            "replace the model saved there (its other files are kept)"
        )


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Check the file `path` can be written (its folder exists and is writable) without creating it."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise CLIError(f"{flag} {path} is a folder; give a file name")
    folder = file.parent
    if not folder.is_dir():
        raise CLIError(f"{flag} {path}: the folder {folder} does not exist; create it or choose another {flag}")
    if not os.access(folder, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise CLIError(f"{flag} {path}: permission denied; choose a writable {flag}")
    return file
