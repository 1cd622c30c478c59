"""One process or several, for the commands: `Processes` is `hf_sparse.features.processes.Processes` (one helper for
the command line and feature extraction); a `ProcessSetupError` becomes a one-line error (exit status 1).

Example:
    >>> procs = Processes.start()
    >>> if procs.is_main:
    ...     print("summary")
"""

from ..features.processes import Processes, ProcessSetupError

__all__ = ["ProcessSetupError", "Processes"]
