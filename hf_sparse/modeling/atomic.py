"""Atomic checkpoint folders: written into a temporary folder beside the target, which then takes its place in one
rename, so a crash leaves either the old checkpoint or the new one, never a mix.

Example:
    >>> with atomic_folder("out", drop=("model.safetensors",), seed=("README.md",)) as tmp:
    ...     (tmp / "config.json").write_text("{}")
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read without changing it where /proc allows, else set and restored at once).

    Example:
        >>> oct(current_umask())
        '0o22'
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- atomic folder writes
def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (no copy of large files; never written through: every file here is replaced, not rewritten),
    else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _carry_over(old: Path, new: Path, skip: frozenset[str] = frozenset()) -> None:
    """Copy into `new` every entry of `old` that `new` does not hold (recursively into folders both hold)."""
    for entry in os.scandir(old):
        if entry.name in skip:
            continue
        target = new / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_dir() and not target.is_symlink():
                _carry_over(Path(entry.path), target)
            elif not os.path.lexists(target):
                shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        elif not os.path.lexists(target):
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            else:
                _link_or_copy(entry.path, str(target))


def _move_into(source: Path, target: Path) -> None:
    """Move every entry of `source` into `target`, file by file with `os.replace` (each file atomic)."""
    target.mkdir(exist_ok=True)
    for entry in os.scandir(source):
        destination = target / entry.name
        if entry.is_dir(follow_symlinks=False) and destination.is_dir() and not destination.is_symlink():
            _move_into(Path(entry.path), destination)
        else:
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(entry.path, destination)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def atomic_folder(directory: str | os.PathLike, *, drop: tuple[str, ...] = (), seed: tuple[str, ...] = ()):
    """Write the folder `directory` atomically: yields a new empty temporary folder to write into; when the block
    ends without an error, the entries of the existing `directory` that were not written again (except those named
    in `drop`: stale files of an earlier save) are carried over, and the temporary folder takes `directory`'s place
    in one atomic exchange (Linux; elsewhere two renames). After an error the temporary folder is removed and
    `directory` is as it was. `seed`: files copied from the existing folder into the temporary one first (e.g. a
    README.md the new text is merged into).

    Where the folder cannot be swapped (it holds the working directory, or its parent is not writable), the files
    are written into a temporary folder inside it and then moved in one by one (each file atomic).

    Example:
        >>> with atomic_folder("out", drop=("model.safetensors",)) as tmp:
        ...     (tmp / "config.json").write_text("{}")
    """
    directory = Path(os.path.abspath(Path(directory).expanduser()))
    if directory.is_symlink():
        directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file, not a folder")
    existed = directory.is_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    in_place = existed and (_inside(Path(os.getcwd()).resolve(), directory.resolve())
                            or not os.access(directory.parent, os.W_OK | os.X_OK))
    where = directory if in_place else directory.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.hf_sparse-tmp-", dir=where))
    # mkdtemp makes a private folder (0700) that becomes `directory`: give it the existing folder's mode, else the
    # mode of any new folder (0777 less the umask)
    os.chmod(tmp, (directory.stat().st_mode & 0o7777) if existed else 0o777 & ~current_umask())
    try:
        for name in seed:
            if existed and (directory / name).is_file():
                shutil.copy2(directory / name, tmp / name)
        yield tmp
        if in_place:
            for name in drop:
                stale = directory / name
                if name not in os.listdir(tmp) and stale.is_file():
                    stale.unlink()
            _move_into(tmp, directory)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if existed:
            _carry_over(directory, tmp, skip=frozenset(drop))
            if not _exchange(tmp, directory):
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.hf_sparse-old-", dir=directory.parent))
                os.rmdir(old)
                os.rename(directory, old)
                try:
                    os.rename(tmp, directory)
                except OSError:
                    os.rename(old, directory)
                    raise
                tmp = old
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder, swapped out
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
