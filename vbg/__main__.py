"""``python -m vbg`` is the ``vbg`` command."""

import sys

from vbg.commands.cli import main

sys.exit(main())
