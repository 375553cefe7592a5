"""Synthetic demo feed and the end-to-end demo runner."""

# defaults of ``pm-polars demo`` (plain constants: the command line shows them without Polars)
DEFAULT_EVENTS = 200_000
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_SEED = 7
DEFAULT_STARTING_CASH = 10_000_000.0  # account currency
DEFAULT_RATE = 2_000  # events per second of `demo --serve`
DEFAULT_LIVE_BATCH = 200  # events per batch: 10 batches per second at the default rate
