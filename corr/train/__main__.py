"""``python -m corr.train``: see :mod:`corr.train.cli`."""

import sys

from ..logs import INTERRUPTED, exit_cli

try:  # Ctrl-C while the modules load (torch takes seconds): the same exit as mid-run
    from .cli import main

    code = main()
except KeyboardInterrupt:
    print("\ninterrupted before training started: run the same command to resume", file=sys.stderr)
    code = INTERRUPTED
exit_cli(code)
