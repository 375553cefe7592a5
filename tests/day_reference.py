"""The scalar reference extended with the trading day: the roll and today's figures.

One event at a time, in arrival order, on top of ``reference.ReferenceBook``:

* an event's trading day: its ``ts`` on the wall clock of ``tz``; before ``roll_time``
  it belongs to the previous date (``datetime`` + ``zoneinfo``, no Polars);
* an event of a later day than the book's first rolls the book: per position
  ``overnight_quantity`` := quantity, ``overnight_average_price`` := average, day counters
  := 0; per instrument ``prev_close`` := its mark; an event of an earlier day is booked in
  the current day and counted late; a ts-less event belongs to the current day;
* a fill adds to the day's buy/sell quantity and value, realized P&L and fees;
* ``m2m = (day_sell_value - day_buy_value) + q x L x m - q0 x prev_close x m`` (the
  ``eod.roll`` formula, written out differently from the engine's sum of its attribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from reference import InvalidEvent, ReferenceBook, _Fill, _Tick, parse_event


@dataclass
class _Day:
    overnight_quantity: int = 0
    overnight_average_price: float = 0.0
    buy_quantity: int = 0
    sell_quantity: int = 0
    buy_value: float = 0.0
    sell_value: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0


def trading_date(ts_ns: int, tz: str, roll: time) -> str:
    local = datetime.fromtimestamp(ts_ns // 10**9, tz=UTC).replace(
        microsecond=(ts_ns % 10**9) // 1000).astimezone(ZoneInfo(tz))
    day = local.date() if local.time().replace(tzinfo=None) >= roll else \
        local.date() - timedelta(days=1)
    return day.isoformat()


class DayReference(ReferenceBook):
    """``ReferenceBook`` plus the trading day (see the module docstring)."""

    def __init__(self, *args: Any, tz: str = "Asia/Kolkata", roll: str = "00:00",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz, self.roll_time = tz, time.fromisoformat(roll)
        self.day: str | None = None
        self.late = 0
        self.rolls = 0
        self._day: dict[tuple[str, int], _Day] = {}
        self.prev_close: dict[int, float | None] = {}

    def apply(self, events: Any) -> list[tuple[Any, str]]:
        rejects: list[tuple[Any, str]] = []
        for raw in events:
            try:
                event = parse_event(raw)
            except InvalidEvent as exc:
                rejects.append((raw, str(exc)))
                continue
            if isinstance(event, _Fill) and event.fill_id is not None and (
                    event.source, event.fill_id) in self._seen_fill_ids:
                continue  # a duplicate changes nothing, not even the day
            if event.ts is not None:
                d = trading_date(event.ts, self.tz, self.roll_time)
                if self.day is None or d > self.day:
                    self._roll(d)
                elif d < self.day:
                    self.late += 1
            if isinstance(event, _Tick):
                self._apply_tick(event)
            else:
                self._apply_day_fill(event)
        return rejects

    def _roll(self, day: str) -> None:
        if self.day is not None or self._positions:
            self.rolls += 1
        self.day = day
        for key, pos in self._positions.items():
            self._day[key] = _Day(pos.quantity, pos.average_price if pos.quantity else 0.0)
        tokens = set(self._tick_marks) | set(self._fill_marks)
        self.prev_close = {tok: self.mark(tok) for tok in tokens}

    def _apply_day_fill(self, fill: _Fill) -> None:
        key = (fill.portfolio_id, fill.instrument_token)
        pos = self._positions.get(key)
        before = pos.realized_pnl if pos is not None else 0.0
        self._apply_fill(fill)
        pos = self._positions[key]
        day = self._day.setdefault(key, _Day())
        notional = fill.quantity * fill.price * self.multiplier(fill.instrument_token)
        if fill.side == "BUY":
            day.buy_quantity += fill.quantity
            day.buy_value += notional
        else:
            day.sell_quantity += fill.quantity
            day.sell_value += notional
        day.realized_pnl += pos.realized_pnl - before
        day.fees += fill.fee

    def day_positions(self) -> list[dict[str, Any]]:
        out = []
        for row in self.positions():
            key = (row["portfolio_id"], row["instrument_token"])
            day = self._day.get(key, _Day())
            m, mark, q = row["multiplier"], row["last_price"], row["quantity"]
            pc = self.prev_close.get(row["instrument_token"])
            q0 = day.overnight_quantity
            assert pc is not None or q0 == 0  # a carried position had a mark at the roll
            base = q0 * pc * m if pc is not None and q0 else 0.0
            flow = day.sell_value - day.buy_value
            out.append({
                **row, "overnight_quantity": q0,
                "overnight_average_price": day.overnight_average_price, "prev_close": pc,
                "day_buy_quantity": day.buy_quantity, "day_sell_quantity": day.sell_quantity,
                "day_buy_value": day.buy_value, "day_sell_value": day.sell_value,
                "day_realized_pnl": day.realized_pnl, "day_fees": day.fees,
                "day_pnl": flow + (day.buy_quantity - day.sell_quantity) * mark * m,
                "day_carried_pnl": q0 * (mark - pc) * m if pc is not None and q0 else 0.0,
                "m2m": flow + q * mark * m - base,
            })
        return out

    def day_portfolios(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for p in self.day_positions():
            acc = out.setdefault(p["portfolio_id"], dict.fromkeys(
                ("m2m", "day_pnl", "day_realized_pnl", "day_fees", "day_carried_pnl"), 0.0))
            for k in acc:
                acc[k] += p[k]
        return out
