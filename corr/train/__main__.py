"""``python -m corr.train``: see :mod:`corr.train.cli`."""

import sys

from .cli import main

sys.exit(main())
