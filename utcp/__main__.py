"""``python -m utcp``: the same as the ``utcp`` command."""

import sys

from .cli import main

sys.exit(main())
