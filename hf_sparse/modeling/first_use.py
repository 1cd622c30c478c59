"""Functions to run once, when the first `SparseHeadConfig` is made (pure Python: importing this imports nothing).

`import hf_sparse` adds one that registers the public model classes with transformers' Auto classes: a
checkpoint's config is made before any Auto class or pipeline looks its model class up, and by then transformers is
fully loaded (registering while transformers is still importing itself can fail).

Example:
    >>> on_first_config(lambda: print("first config"))
    >>> SparseHeadConfig()     # prints "first config" (once)
"""

from __future__ import annotations

from collections.abc import Callable

_CALLBACKS: list[Callable[[], None]] = []


def on_first_config(callback: Callable[[], None]) -> None:
    """Run `callback` when the next `SparseHeadConfig` is made (once)."""
    _CALLBACKS.append(callback)


def first_config() -> None:
    """Run (and forget) the waiting callbacks; `SparseHeadConfig.__post_init__` calls this."""
    while _CALLBACKS:
        _CALLBACKS.pop(0)()
