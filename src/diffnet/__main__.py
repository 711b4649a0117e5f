"""``python -m diffnet``: the CLI, as the workflow's rules call it (on the workflow's own src/)."""

import sys

from diffnet.cli import main

sys.exit(main())
