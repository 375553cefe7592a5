"""Static universe of the synthetic demo feed: NSE-like instruments, strategies and topics.

Instrument tokens and symbols follow the Kite convention (``256265`` is ``NIFTY 50``).
Wire quantities are in *units* (one NIFTY lot is 75 units), so ``lot_size`` is only the
granularity of the generated fills and ``multiplier`` (P&L per unit per point) is 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

TICKS_TOPIC = "market.ticks"
FILLS_TOPIC_PREFIX = "orders.filled."
SOURCES = ("paper", "live")


def fills_topic(source: str) -> str:
    """Kafka topic that carries the fills of ``source`` (``orders.filled.<source>``)."""
    return f"{FILLS_TOPIC_PREFIX}{source}"


@dataclass(frozen=True)
class Instrument:
    """One tradable instrument and the parameters of its random-walk price."""

    token: int
    symbol: str
    lot_size: int
    start_price: float
    tick_size: float
    sigma: float  # per-tick log-return standard deviation
    max_lots: int  # generated positions stay within +-max_lots lots
    multiplier: float = 1.0


@dataclass(frozen=True)
class Strategy:
    """A strategy, the sources it runs on and the instruments it trades."""

    strategy_id: str
    sources: tuple[str, ...]
    tokens: tuple[int, ...]


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(256265, "NIFTY 50", 75, 24510.0, 0.05, 0.00012, 4),
    Instrument(260105, "NIFTY BANK", 30, 52340.0, 0.05, 0.00015, 5),
    Instrument(738561, "RELIANCE", 1, 1298.4, 0.05, 0.00020, 800),
    Instrument(341249, "HDFCBANK", 1, 1712.6, 0.05, 0.00018, 600),
    Instrument(1270529, "ICICIBANK", 1, 1284.9, 0.05, 0.00018, 800),
    Instrument(408065, "INFY", 1, 1865.3, 0.05, 0.00020, 500),
    Instrument(2953217, "TCS", 1, 4102.75, 0.05, 0.00017, 250),
    Instrument(779521, "SBIN", 1, 812.35, 0.05, 0.00022, 1200),
)

STRATEGIES: tuple[Strategy, ...] = (
    Strategy("Momentum_NIFTY50_1", ("paper", "live"), (256265,)),
    Strategy("MeanRev_BANKNIFTY_1", ("paper", "live"), (260105,)),
    Strategy("Pairs_HDFCBANK_ICICIBANK_1", ("paper",), (341249, 1270529)),
    Strategy("Breakout_RELIANCE_1", ("live",), (738561,)),
    Strategy("StatArb_IT_1", ("paper", "live"), (408065, 2953217)),
    Strategy("Momentum_NIFTY50_2", ("paper",), (256265, 260105)),
    Strategy("Scalper_SBIN_1", ("live",), (779521,)),
    Strategy("Basket_LargeCap_1", ("paper",), (738561, 341249, 408065, 2953217, 779521)),
)

INSTRUMENT_BY_TOKEN: dict[int, Instrument] = {i.token: i for i in INSTRUMENTS}


def portfolio_id(source: str, strategy_id: str) -> str:
    """The engine's portfolio key for a strategy on a source."""
    return f"{source}_{strategy_id}"


def strategy_portfolios(n_strategies: int | None = None) -> list[tuple[str, Strategy]]:
    """``(source, strategy)`` pairs of the first ``n_strategies`` strategies (all if None)."""
    chosen = STRATEGIES if n_strategies is None else STRATEGIES[: max(1, n_strategies)]
    return [(src, s) for s in chosen for src in SOURCES if src in s.sources]


def portfolio_ids(n_strategies: int | None = None) -> list[str]:
    """Portfolio ids that the feed can trade, in catalogue order."""
    return [portfolio_id(src, s.strategy_id) for src, s in strategy_portfolios(n_strategies)]


def instruments_frame() -> pl.DataFrame:
    """Reference data for :class:`PortfolioEngine` (one row per instrument)."""
    return pl.DataFrame(
        {
            "instrument_token": [i.token for i in INSTRUMENTS],
            "tradingsymbol": [i.symbol for i in INSTRUMENTS],
            "lot_size": [i.lot_size for i in INSTRUMENTS],
            "multiplier": [i.multiplier for i in INSTRUMENTS],
        },
        schema={
            "instrument_token": pl.Int64(),
            "tradingsymbol": pl.String(),
            "lot_size": pl.Int64(),
            "multiplier": pl.Float64(),
        },
    )
