"""``python -m corr.weights``: list or download the model weights corr uses."""

import sys

from .cli import main

sys.exit(main())
