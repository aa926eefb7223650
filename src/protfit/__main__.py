"""`python -m protfit ...` (what `accelerate launch -m protfit train ...` and torchrun start)."""

import sys

from protfit.cli import main

sys.exit(main())
