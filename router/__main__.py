"""`python -m router`: the same as the `failover-router` command."""

import sys

from .cli import main

sys.exit(main())
