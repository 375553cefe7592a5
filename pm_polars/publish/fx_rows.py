"""The publish path of a book with several currencies or inverse contracts (``engine.currencies``).

``model_rows`` renders a batch's positions and portfolios in Python; for such a book it
follows ``engine.fxviews`` operation for operation:

* per position: ``pnl_currency``, ``inverse``, ``fx_rate`` (one unit of ``pnl_currency``
  in the account currency from the latest mark of its FX instrument, a direct pair ``CA``
  first, else ``1 /`` the reverse ``AC``; 1.0 for the account currency; ``None`` when no
  mark) and ``missing_rate``. An inverse row is valued on its line price ``-1/price`` and
  shown in prices again (``average_price`` the harmonic one, ``*_value`` negated,
  ``market_value = qty x m / mark``);
* per portfolio (:func:`portfolio_rows`): every money total in the account currency, each
  position's money x its ``fx_rate``; ``cash`` adds each other position's own cash;
  ``equity = cash + sum(market value of linear) + sum(unrealized P&L of inverse)``; every
  money total ``None`` and ``missing_rate`` true when one of its positions has no rate.

:class:`FxFacts` is built once per instruments table (``FxFacts.of``, ``None`` when every
instrument is linear in the account currency: today's path, unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from pm_polars.engine import currencies, views
from pm_polars.engine.dayfigures import PORTFOLIO_DAY_SUMS
from pm_polars.engine.fxviews import FX_POSITION_COLUMNS, PORTFOLIO_MONEY

__all__ = ["FX_POSITION_COLUMNS", "FxFacts", "portfolio_rows"]


@dataclass(frozen=True)
class FxFacts:
    """``tokens``: instrument -> (pnl currency, inverse) for instruments not linear in
    ``account``; ``routes``: currency -> [(FX instrument, direct)] in the order rates are
    looked for (every direct pair, then every reverse one, instruments-file order)."""

    account: str
    tokens: dict[int, tuple[str, bool]]
    routes: dict[str, list[tuple[int, bool]]]

    @classmethod
    def of(cls, instruments: pl.DataFrame, account: str) -> FxFacts | None:
        fx = currencies.of(instruments, account)
        if fx is None:
            return None
        tokens = {int(t): (str(c), bool(i)) for t, c, i in fx.tokens.iter_rows()}
        routes: dict[str, list[tuple[int, bool]]] = {}
        if "fx_pair" in instruments.columns:
            pairs = instruments.filter(pl.col("fx_pair").is_not_null()).select(
                "instrument_token", "fx_pair").rows()
            for direct in (True, False):
                for tok, pair in pairs:
                    base, quote = pair[:3], pair[3:6]
                    if direct and quote == account:
                        routes.setdefault(base, []).append((int(tok), True))
                    elif not direct and base == account:
                        routes.setdefault(quote, []).append((int(tok), False))
        return cls(account, tokens, routes)

    @property
    def rate_tokens(self) -> list[int]:
        """The FX instruments whose marks the rates come from."""
        return sorted({t for route in self.routes.values() for t, _ in route})

    def rates(self, marks: Mapping[int, float | None]) -> dict[str, float]:
        """Currency -> rate into the account currency (``currencies.rates``) from
        ``marks`` (token -> mark, ``None`` or absent: no mark)."""
        out = {self.account: 1.0}
        for cur, route in self.routes.items():
            for tok, direct in route:
                m = marks.get(tok)
                if m is not None and cur not in out:
                    out[cur] = m if direct else 1.0 / m
        return out

    def facts(self, tok: int) -> tuple[str, bool]:
        return self.tokens.get(tok, (self.account, False))


def line(price: float | None, inverse: bool) -> float | None:
    """``currencies.line_price`` of one price."""
    return -1.0 / price if inverse and price is not None else price


def shown(row: dict[str, Any], fx: FxFacts, rates: Mapping[str, float]) -> dict[str, Any]:
    """A position row rendered on line prices as ``fxviews`` shows it (in place)."""
    cur, inv = fx.facts(row["instrument_token"])
    if inv:
        for c in ("average_price", "overnight_average_price"):
            if row[c] != 0:
                row[c] = -1.0 / row[c]
        for c in ("buy_value", "sell_value", "day_buy_value", "day_sell_value", "market_value"):
            row[c] = -row[c]
    rate = rates.get(cur)
    row.update(pnl_currency=cur, inverse=inv, fx_rate=rate, missing_rate=rate is None)
    return row


def portfolio_rows(cash: list[tuple[Any, ...]], cash_columns: list[str],
                   members: Mapping[str, str], positions: list[dict[str, Any]],
                   account: str, trading_day: str | None) -> list[dict[str, Any]]:
    """``fxviews.portfolios_view`` rows of ``members`` (sorted by id) as dicts."""
    n_day = len(PORTFOLIO_DAY_SUMS)
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for p in positions:
        pid = p["portfolio_id"]
        acc = sums.setdefault(pid, [0.0] * (7 + n_day))
        cnt = counts.setdefault(pid, [0, 0])
        cnt[0] += p["quantity"] != 0
        r = p["fx_rate"]
        if r is None:
            cnt[1] = 1
            continue  # a null product is left out of a Polars sum; the totals go null
        inv, unreal, fees = p["inverse"], p["unrealized_pnl"], p["fees"]
        mv = p["market_value"] * r
        acc[0] += p["realized_pnl"] * r
        acc[1] += unreal * r if unreal is not None else 0.0
        acc[2] += fees * r
        acc[3] += mv
        acc[4] += abs(mv)
        if inv or p["pnl_currency"] != account:
            own = (p["realized_pnl"] - fees if inv
                   else p["sell_value"] - p["buy_value"] - fees)
            acc[5] += own * r
        value = unreal if inv else p["market_value"]
        acc[6] += value * r if value is not None else 0.0
        for i, c in enumerate(PORTFOLIO_DAY_SUMS):
            acc[7 + i] += (p[c] or 0.0) * r
    at = [cash_columns.index(c) for c in ("portfolio_id", "source", "strategy_id", "cash")]
    out = []
    for row in cash:
        pid, source, strategy, money = (row[i] for i in at)
        if pid not in members:
            continue
        real, unreal, fees, mv, gross, own, value, *day = sums.get(pid, [0.0] * (7 + n_day))
        n, missing = counts.get(pid, (0, 0))
        figures = dict(zip(PORTFOLIO_DAY_SUMS, day, strict=True))
        total_cash = money + own
        doc: dict[str, Any] = {
            "portfolio_id": pid, "source": source, "strategy_id": strategy,
            "cash": total_cash, "total_realized_pnl": real, "total_unrealized_pnl": unreal,
            "total_fees": fees, "total_pnl": real + unreal, "net_pnl": real + unreal - fees,
            "market_value": mv, "equity": total_cash + value, "gross_exposure": gross,
            "net_exposure": mv, "open_positions": int(n), "trading_day": trading_day,
            **figures, "day_net_pnl": figures["m2m"] - figures["day_fees"],
            "missing_rate": bool(missing)}
        if missing:
            for c in PORTFOLIO_MONEY:
                doc[c] = None
        out.append({c: doc[c] for c in (*views.PORTFOLIO_COLUMNS, "missing_rate")})
    return out
