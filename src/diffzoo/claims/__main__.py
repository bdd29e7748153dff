"""``python -m diffzoo.claims``: see :mod:`diffzoo.claims.runner`."""

import sys

from .runner import main

sys.exit(main())
