"""``python -m pm_polars.cli``: same as the ``pm-polars`` console script."""

import sys

from pm_polars.cli import main

if __name__ == "__main__":  # not when a worker process (spawn) imports it
    sys.exit(main())
