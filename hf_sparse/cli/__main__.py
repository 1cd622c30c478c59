"""``python -m hf_sparse.cli``: the ``hf-sparse`` command (also for ``accelerate launch -m hf_sparse.cli``).

Example:
    $ python -m hf_sparse.cli fit --help
"""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
