"""``python -m corr.train``: see :mod:`corr.train.cli`."""

from ..logs import exit_cli
from .cli import main

exit_cli(main())
