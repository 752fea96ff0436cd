"""``python -m vbg`` is the ``vbg`` command."""

import sys

from vbg.cli import main

sys.exit(main())
