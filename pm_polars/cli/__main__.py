"""``python -m pm_polars.cli``: same as the ``pm-polars`` console script."""

import sys

from pm_polars.cli import main

sys.exit(main())
