"""``python -m portfolio_core.bench``."""

import sys

from portfolio_core.bench import main

sys.exit(main())
