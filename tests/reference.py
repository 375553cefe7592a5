"""A deliberately simple scalar reference implementation of the pm_polars accounting rules.

Plain Python loops over dicts and floats, one event at a time, in arrival order. Nothing
here is vectorised or clever: every rule of the spec is one obvious statement, so the
reference can be checked by eye (and is checked against hand-worked numbers in
``tests/unit/test_accounting_cases.py``). The columnar engine is then compared against it
in the property tests.

Rules implemented (per (portfolio_id, instrument_token), average-cost accounting):

* signed quantity; a fill on the other side first closes ``min(qty, |q|)`` against the old
  average (realized += closed * (price - avg) * sign(q) * m), any remainder opens at the fill
  price (flip); partial closes keep the average; adds re-average; flat -> average 0.
* fees accumulate per position; net_pnl = realized + unrealized - fees.
* mark per instrument: the latest tick by ts (ties: later arrival wins); before any tick,
  the latest fill price of that instrument (any portfolio, same ts rule).
* cash per portfolio: BUY -q*p*m - fee, SELL +q*p*m - fee; equity = cash + sum(q*mark*m).
* a fill whose (source, fill_id) was seen before is ignored; invalid records are rejected
  and change nothing (not even the dedupe memory or the marks).

Reference-only choices for cases the spec leaves open (never asserted by the tests):
a null ts compares as "newer" than anything (arrival order); the aggregate
``<source>_Overall`` average_price is the net cost basis / net quantity (0 when net flat).

FIFO (``ReferenceBook(cost_basis="fifo")``): each opening fill (or the remainder of a
flip) appends a lot ``[units, price]``; a reducing fill closes units from the first lot
on, realizing ``units * (price - lot_price) * sign(q) * m`` per lot; the average price is
the unit-weighted average of the open lots.

Fractional quantities (``ReferenceBook(quantity_decimals=d)``, ``d > 0``): a fill's quantity
may be any number with at most ``d`` decimal places (its JSON text, as Python's ``repr``
writes a float); it is held as an exact ``Fraction``, so sums and closes are exact; money
is ``Fraction x float`` (a float). More places -> rejected.

Currencies (``ReferenceBook(account_currency=...)`` with instrument rows carrying
``quote_currency``/``base_currency``/``inverse``/``fx_pair``): a position books in its pnl
currency (an inverse contract's base currency, else its quote currency, else the account's);
cash is kept per portfolio *and currency* (linear: the notional and fee in the quote
currency; inverse: realized P&L less fees in the base currency, no notional). An inverse
position keeps the quantity-weighted mean of ``1/price`` of its open units (average cost;
FIFO: per lot), realizes ``closed x sign x m x (mean_inv - 1/price)`` (BitMEX's ``contracts
x multiplier x (1/entry - 1/exit)``), shows ``average_price = 1/mean_inv``, ``market_value
= q x m / mark`` and contributes its unrealized P&L (not its face value) to equity. Totals
convert each figure at the latest rate: the mark of fx pair ``CA`` (or ``1/AC``); none: the
totals are ``None`` and ``missing_rate`` true. ``fee_currency = "base"`` (linear only): the
fee is units of the asset: a buy holds ``q - f`` for ``q x p`` paid (average = cost / units
held), a sell gives up ``q + f`` units for ``q x p`` received (realized = proceeds - units x
average; FIFO: the units come off the lots in order); not in ``fees`` nor cash.

Bid/ask marks (``ReferenceBook(mark="bid_ask")``): a tick may carry ``bid``/``ask``; the
winning tick's quote is kept with its price (a later winner without a side clears it). A
long is valued at the bid, a short at the ask, each falling back to the mark when missing;
``last_price`` shows the mark either way (``unrealized_pnl``/``market_value`` move).

Non-positive prices: refused unless the instrument's row has ``allow_negative_price``
true; then any finite price counts (P&L is the same arithmetic: nothing divides by a price).

The second half of the module holds test plumbing shared by the test files: event
builders, an adapter that turns the engine's frames into the same plain structures, and a
tolerance-aware state comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeGuard

DEFAULT_STARTING_CASH = 1_000_000.0
Units = Any  # a quantity: int, or an exact Fraction with ``quantity_decimals`` > 0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

POSITION_FIELDS = (
    "portfolio_id",
    "instrument_token",
    "quantity",
    "average_price",
    "last_price",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "multiplier",
    "market_value",
    "buy_quantity",
    "sell_quantity",
    "buy_value",
    "sell_value",
)
PORTFOLIO_FIELDS = (
    "portfolio_id",
    "source",
    "strategy_id",
    "cash",
    "total_realized_pnl",
    "total_unrealized_pnl",
    "total_fees",
    "total_pnl",
    "net_pnl",
    "market_value",
    "equity",
    "gross_exposure",
    "net_exposure",
)


# --------------------------------------------------------------------------------------
# The reference book
# --------------------------------------------------------------------------------------


class InvalidEvent(ValueError):
    """Raised by the validators; the message is the reject reason."""


def _is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> TypeGuard[int | float]:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _positive_price(x: Any, name: str, allowed: bool = False) -> float:
    """A finite price, > 0 unless ``allowed`` (the instrument's ``allow_negative_price``)."""
    if not _is_number(x) or not math.isfinite(x) or (x <= 0 and not allowed):
        raise InvalidEvent(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def ts_to_ns(ts: Any) -> int | None:
    """Event time -> integer ns since epoch. Numbers: epoch milliseconds from 1e11."""
    if ts is None:
        return None
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError as exc:
            raise InvalidEvent(f"ts: not an ISO timestamp {ts!r}") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    if not _is_number(ts) or not math.isfinite(ts):
        raise InvalidEvent(f"ts: not a timestamp {ts!r}")
    if not 10**11 <= ts <= (2**63 - 1) // 10**6:  # epoch ms only: other units refused
        raise InvalidEvent(f"ts: not epoch milliseconds {ts!r}")
    factor = 10**6
    return ts * factor if _is_int(ts) else round(ts * factor)


def _is_newer(new_ts: int | None, old: tuple[int | None, float] | None) -> bool:
    """The mark rule: a newer-or-equal ts replaces the mark (equal ts: later arrival wins)."""
    if old is None:
        return True
    old_ts = old[0]
    if new_ts is None or old_ts is None:
        return True  # reference-only choice: no ts -> arrival order
    return new_ts >= old_ts


@dataclass
class _Fill:
    source: str
    strategy_id: str
    instrument_token: int
    side: str
    quantity: Units
    price: float
    fee: float
    fill_id: str | None
    ts: int | None
    fee_currency: str | None = None

    @property
    def portfolio_id(self) -> str:
        return f"{self.source}_{self.strategy_id}"


@dataclass
class _Tick:
    instrument_token: int
    price: float
    ts: int | None
    bid: float | None = None
    ask: float | None = None


def decimal_quantity(x: Any, decimals: int) -> Fraction:
    """A fill quantity with at most ``decimals`` places, exactly (its decimal text)."""
    if not _is_number(x) or not math.isfinite(x) or x <= 0:
        raise InvalidEvent(f"quantity must be a number > 0, got {x!r}")
    exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    exponent = exact.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > decimals:
        raise InvalidEvent(f"quantity has more than {decimals} decimal places: {x!r}")
    return Fraction(exact)


def parse_event(raw: Any, quantity_decimals: int = 0,
                negative_ok: frozenset[int] = frozenset()) -> _Fill | _Tick:
    """Validate one record; raise InvalidEvent (message = reason) if the spec calls it invalid.
    ``negative_ok``: tokens whose prices may be <= 0 (``allow_negative_price``)."""
    if isinstance(raw, bytes | bytearray | str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidEvent(f"bad JSON: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise InvalidEvent("record is not a JSON object")
    event_type = raw.get("event_type")
    if event_type == "market_tick":
        token = raw.get("instrument_token")
        if not _is_int(token):
            raise InvalidEvent(f"instrument_token missing or not an integer: {token!r}")
        ok = token in negative_ok
        price = _positive_price(raw.get("last_price"), "last_price", ok)
        bid, ask = (None if raw.get(k) is None else _positive_price(raw[k], k, ok)
                    for k in ("bid", "ask"))
        return _Tick(token, price, ts_to_ns(raw.get("ts")), bid, ask)
    if event_type != "order_fill":
        raise InvalidEvent(f"unknown event_type {event_type!r}")
    source = raw.get("source")
    if not isinstance(source, str) or not source:
        raise InvalidEvent(f"source missing: {source!r}")
    signal = raw.get("original_signal")
    if not isinstance(signal, Mapping):
        raise InvalidEvent("original_signal missing")
    strategy_id = signal.get("strategy_id")
    if not isinstance(strategy_id, str) or not strategy_id:
        raise InvalidEvent(f"original_signal.strategy_id missing: {strategy_id!r}")
    token = signal.get("instrument_token")
    if not _is_int(token):
        raise InvalidEvent(f"original_signal.instrument_token missing or not int: {token!r}")
    side = signal.get("signal_type")
    if side not in ("BUY", "SELL"):
        raise InvalidEvent(f"unknown signal_type {side!r}")
    quantity = raw.get("quantity")
    if quantity_decimals:
        quantity = decimal_quantity(quantity, quantity_decimals)
    elif not _is_int(quantity) or quantity <= 0:
        raise InvalidEvent(f"quantity must be a positive integer, got {quantity!r}")
    price = _positive_price(raw.get("fill_price"), "fill_price", token in negative_ok)
    fee = raw.get("fee")
    if fee is None:
        fee = 0.0
    if not _is_number(fee) or not math.isfinite(fee):
        raise InvalidEvent(f"fee must be a finite number, got {fee!r}")
    fill_id = raw.get("fill_id")
    return _Fill(
        source=source,
        strategy_id=strategy_id,
        instrument_token=token,
        side=side,
        quantity=quantity,
        price=price,
        fee=float(fee),
        fill_id=None if fill_id is None else str(fill_id),
        ts=ts_to_ns(raw.get("ts")),
        fee_currency=raw.get("fee_currency"),
    )


@dataclass
class _Position:
    quantity: Units = 0
    average_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    buy_quantity: Units = 0
    sell_quantity: Units = 0
    buy_value: float = 0.0
    sell_value: float = 0.0
    lots: list[list[Any]] | None = None  # FIFO only: [units open, price, fill_id], oldest first
    mean_inv: float = 0.0  # inverse, average cost: mean of 1/price over the open units


@dataclass
class _Portfolio:
    source: str
    strategy_id: str
    cash: float


def multipliers_from_rows(instruments: Any) -> dict[int, float]:
    """instrument rows (dicts, or anything with .to_dicts()) -> {token: multiplier}."""
    if instruments is None:
        return {}
    rows = instruments.to_dicts() if hasattr(instruments, "to_dicts") else list(instruments)
    out: dict[int, float] = {}
    for row in rows:
        m = row.get("multiplier")
        if m is None:
            m = row.get("lot_size")
        out[int(row["instrument_token"])] = 1.0 if m is None else float(m)
    return out


def negative_ok_from_rows(instruments: Any) -> frozenset[int]:
    """Tokens whose instrument row has ``allow_negative_price`` true."""
    if instruments is None:
        return frozenset()
    rows = instruments.to_dicts() if hasattr(instruments, "to_dicts") else list(instruments)
    return frozenset(int(r["instrument_token"]) for r in rows
                     if r.get("allow_negative_price") is True)


def _sign(x: Units) -> int:
    return int(x > 0) - int(x < 0)


def _currency_rows(instruments: Any) -> dict[int, dict[str, Any]]:
    """instrument rows -> {token: {pnl_currency (None: the account's), inverse, fx_pair}}."""
    if instruments is None:
        return {}
    rows = instruments.to_dicts() if hasattr(instruments, "to_dicts") else list(instruments)
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        inverse = bool(row.get("inverse") or False)
        pair = row.get("fx_pair")
        out[int(row["instrument_token"])] = {
            "pnl_currency": row.get("base_currency") if inverse else row.get("quote_currency"),
            "inverse": inverse,
            "fx_pair": None if pair is None else str(pair).replace("/", ""),
        }
    return out


class _CurrencyBook:
    """The currency half of :class:`ReferenceBook` (see the module docstring)."""

    account: str
    currency_rows: dict[int, dict[str, Any]]
    other_cash: dict[tuple[str, str], float]
    quantity_decimals: int
    cost_basis: str
    _positions: dict[tuple[str, int], _Position]
    _portfolios: dict[str, _Portfolio]
    _fill_marks: dict[int, tuple[int | None, float]]
    starting_cash: float

    def multiplier(self, token: int) -> float:
        raise NotImplementedError

    def mark(self, token: int) -> float | None:
        raise NotImplementedError

    def pnl_currency(self, token: int) -> tuple[str, bool]:
        row = self.currency_rows.get(token, {})
        return row.get("pnl_currency") or self.account, bool(row.get("inverse"))

    def rate(self, currency: str) -> float | None:
        """One unit of ``currency`` in the account currency (None: no rate)."""
        if currency == self.account:
            return 1.0
        for token, row in self.currency_rows.items():
            if row["fx_pair"] == currency + self.account and self.mark(token) is not None:
                return self.mark(token)
        for token, row in self.currency_rows.items():
            mark = self.mark(token)
            if row["fx_pair"] == self.account + currency and mark is not None:
                return 1.0 / mark
        return None

    def _base_units(self, fill: _Fill) -> Any:
        """A base fee's units (exact) on a linear instrument, else None."""
        if fill.fee_currency != "base" or fill.fee == 0:
            return None
        if self.pnl_currency(fill.instrument_token)[1]:
            return None  # inverse: the fee is money in the base currency
        return Fraction(Decimal(repr(fill.fee)))

    def _base_fee_refusal(self, fill: _Fill) -> str | None:
        units = self._base_units(fill)
        if units is None:
            return None
        if (units * 10**self.quantity_decimals).denominator != 1:
            return "fee: a base-currency fee must be a whole number of atoms"
        if fill.side == "BUY" and units >= fill.quantity:
            return "fee: a base-currency fee must be less than the quantity bought"
        return None

    def _book_fx(self, fill: _Fill) -> bool:
        token = fill.instrument_token
        if _is_newer(fill.ts, self._fill_marks.get(token)):
            self._fill_marks[token] = (fill.ts, fill.price)
        m = self.multiplier(token)
        currency, inverse = self.pnl_currency(token)
        pid = fill.portfolio_id
        if pid not in self._portfolios:
            self._portfolios[pid] = _Portfolio(fill.source, fill.strategy_id, self.starting_cash)
        pos = self._positions.setdefault((pid, token), _Position())
        base = self._base_units(fill)
        qty, price = fill.quantity, fill.price
        signed = qty if fill.side == "BUY" else -qty
        held = signed - (base or 0)  # the held quantity's change
        units = abs(held)
        value = qty * price  # paid or received, per the multiplier
        unit_price = value / units  # what one held unit cost (or fetched)
        old_q = pos.quantity
        new_q = old_q + held
        realized = 0.0
        if self.cost_basis == "fifo":
            lots = pos.lots if pos.lots is not None else []
            pos.lots = lots
            left = units
            if old_q != 0 and _sign(old_q) != _sign(held):
                while left and lots:
                    n = min(left, lots[0][0])
                    if inverse:
                        realized += n * _sign(old_q) * m * (1 / lots[0][1] - 1 / price)
                    else:
                        realized += n * (unit_price - lots[0][1]) * _sign(old_q) * m
                    lots[0][0] -= n
                    left -= n
                    if lots[0][0] == 0:
                        lots.pop(0)
            if left:
                lots.append([left, price if inverse else unit_price, fill.fill_id])
        elif old_q == 0 or _sign(old_q) == _sign(held):
            if inverse:
                pos.mean_inv = (pos.mean_inv * abs(old_q) + units / price) / abs(new_q)
            else:
                pos.average_price = (pos.average_price * abs(old_q) + value) / abs(new_q)
        else:
            closed = min(units, abs(old_q))
            if inverse:
                realized = closed * _sign(old_q) * m * (pos.mean_inv - 1 / price)
            else:
                realized = closed * (unit_price - pos.average_price) * _sign(old_q) * m
            if new_q == 0:
                pos.average_price, pos.mean_inv = 0.0, 0.0
            elif _sign(new_q) != _sign(old_q):
                pos.average_price, pos.mean_inv = unit_price, 1 / price
        pos.realized_pnl += realized
        pos.quantity = new_q
        fee = 0.0 if base is not None else fill.fee
        pos.fees += fee
        notional = units * m / price if inverse else value * m
        if held > 0:
            pos.buy_quantity += units
            pos.buy_value += notional
        else:
            pos.sell_quantity += units
            pos.sell_value += notional
        if inverse:
            flow = realized - fee
        else:
            flow = (-value * m if held > 0 else value * m) - fee
        if currency == self.account and not inverse:
            self._portfolios[pid].cash += flow
        else:
            key = (pid, currency)
            self.other_cash[key] = self.other_cash.get(key, 0.0) + flow
        return True

    def _fx_position_row(self, pid: str, token: int, pos: _Position) -> dict[str, Any]:
        m = self.multiplier(token)
        mark = self.mark(token)
        assert mark is not None
        currency, inverse = self.pnl_currency(token)
        q = pos.quantity
        if inverse:
            if self.cost_basis == "fifo":
                lots = pos.lots or []
                n = sum(u for u, _, _ in lots)
                mean_inv = sum(u / p for u, p, _ in lots) / n if n else 0.0
            else:
                mean_inv = pos.mean_inv
            average = 1 / mean_inv if q != 0 else 0.0
            unrealized = q * m * (mean_inv - 1 / mark) if q != 0 else 0.0
            market_value = q * m / mark
        else:
            if self.cost_basis == "fifo":
                lots = pos.lots or []
                n = sum(u for u, _, _ in lots)
                average = sum(u * p for u, p, _ in lots) / n if n else 0.0
            else:
                average = pos.average_price if q != 0 else 0.0
            unrealized = (mark - average) * q * m if q != 0 else 0.0
            market_value = q * mark * m
        rate = self.rate(currency)
        return {
            "portfolio_id": pid, "instrument_token": token, "quantity": q,
            "average_price": average, "last_price": mark, "realized_pnl": pos.realized_pnl,
            "unrealized_pnl": unrealized, "fees": pos.fees, "multiplier": m,
            "market_value": market_value, "buy_quantity": pos.buy_quantity,
            "sell_quantity": pos.sell_quantity, "buy_value": pos.buy_value,
            "sell_value": pos.sell_value, "pnl_currency": currency, "inverse": inverse,
            "fx_rate": rate, "missing_rate": rate is None,
        }

    def _fx_totals(self, rows: list[dict[str, Any]], pids: list[str]) -> dict[str, Any]:
        """Totals in the account currency; every money figure None when a rate is missing."""
        money = ("cash", "total_realized_pnl", "total_unrealized_pnl", "total_fees",
                 "total_pnl", "net_pnl", "market_value", "equity", "gross_exposure",
                 "net_exposure")
        other = [(c, v) for (p, c), v in self.other_cash.items() if p in pids]
        rates = [r["fx_rate"] for r in rows] + [self.rate(c) for c, _ in other]
        if any(r is None for r in rates):
            return {**dict.fromkeys(money), "missing_rate": True}
        cash = sum(self._portfolios[p].cash for p in pids) + sum(
            v * (self.rate(c) or 0.0) for c, v in other)

        def total(name: str) -> float:
            return float(sum(r[name] * r["fx_rate"] for r in rows))

        realized, unrealized, fees = (total("realized_pnl"), total("unrealized_pnl"),
                                      total("fees"))
        market_value = total("market_value")
        held = sum((r["unrealized_pnl"] if r["inverse"] else r["market_value"]) * r["fx_rate"]
                   for r in rows)
        return {
            "cash": cash, "total_realized_pnl": realized, "total_unrealized_pnl": unrealized,
            "total_fees": fees, "total_pnl": realized + unrealized,
            "net_pnl": realized + unrealized - fees, "market_value": market_value,
            "equity": cash + held,
            "gross_exposure": sum(abs(r["market_value"] * r["fx_rate"]) for r in rows),
            "net_exposure": market_value, "missing_rate": False,
        }


class ReferenceBook(_CurrencyBook):
    """Scalar reference: apply events one by one; read state back as plain Python."""

    def __init__(
        self, starting_cash: float = DEFAULT_STARTING_CASH, instruments: Any = None,
        cost_basis: str = "average", quantity_decimals: int = 0,
        account_currency: str = "INR", mark: str = "last",
    ) -> None:
        self.starting_cash = float(starting_cash)
        self.account = account_currency
        self.currency_rows = _currency_rows(instruments)
        self.currencies = any(r["inverse"] or r["pnl_currency"] not in (None, account_currency)
                              for r in self.currency_rows.values())
        # (pid, currency) -> cash other than the account currency's (``_Portfolio.cash``)
        self.other_cash: dict[tuple[str, str], float] = {}
        self.cost_basis = cost_basis
        self.mark_mode = mark
        self.negative_ok = negative_ok_from_rows(instruments)
        self._quotes: dict[int, tuple[float | None, float | None]] = {}  # winning tick's
        self.quantity_decimals = quantity_decimals
        # FIFO closes in order: (pid, token, close fill_id, lot's fill_id, units, lot price,
        # close price, realized)
        self.matches: list[tuple[str, int, str | None, str | None, int, float, float,
                                 float]] = []
        self.multipliers = multipliers_from_rows(instruments)
        self._positions: dict[tuple[str, int], _Position] = {}
        self._portfolios: dict[str, _Portfolio] = {}
        self._tick_marks: dict[int, tuple[int | None, float]] = {}
        self._fill_marks: dict[int, tuple[int | None, float]] = {}
        # (source, fill_id) -> the first version's content
        self._seen_fill_ids: dict[tuple[str, str], tuple[Any, ...]] = {}

    # ---- writing ---------------------------------------------------------------------

    def apply(self, events: Iterable[Any]) -> list[tuple[Any, str]]:
        """Apply events in arrival order; return the rejected ones as (record, reason)."""
        rejects: list[tuple[Any, str]] = []
        for raw in events:
            try:
                event = parse_event(raw, self.quantity_decimals, self.negative_ok)
            except InvalidEvent as exc:
                rejects.append((raw, str(exc)))
                continue
            if isinstance(event, _Tick):
                self._apply_tick(event)
            elif (reason := self._base_fee_refusal(event)) is not None:
                rejects.append((raw, reason))
            elif not self._apply_fill(event):
                rejects.append((raw, "fill_id: conflicts with the fill already applied"))
        return rejects

    def _apply_tick(self, tick: _Tick) -> None:
        if _is_newer(tick.ts, self._tick_marks.get(tick.instrument_token)):
            self._tick_marks[tick.instrument_token] = (tick.ts, tick.price)
            self._quotes[tick.instrument_token] = (tick.bid, tick.ask)

    def _apply_fill(self, fill: _Fill) -> bool:
        """Apply ``fill``; False when it re-uses a fill_id with other content (a conflict:
        refused, the first version kept)."""
        if fill.fill_id is not None:
            key = (fill.source, fill.fill_id)
            content = (fill.strategy_id, fill.instrument_token, fill.side, fill.quantity,
                       fill.price, fill.fee)
            if key in self._seen_fill_ids:
                return self._seen_fill_ids[key] == content  # same: a duplicate, ignored
            self._seen_fill_ids[key] = content
        return self._book(fill)

    def _book(self, fill: _Fill) -> bool:
        if self.currencies or self._base_units(fill) is not None:
            return self._book_fx(fill)
        token = fill.instrument_token
        if _is_newer(fill.ts, self._fill_marks.get(token)):
            self._fill_marks[token] = (fill.ts, fill.price)

        m = self.multiplier(token)
        pid = fill.portfolio_id
        if pid not in self._portfolios:
            self._portfolios[pid] = _Portfolio(fill.source, fill.strategy_id, self.starting_cash)
        portfolio = self._portfolios[pid]
        pos = self._positions.setdefault((pid, token), _Position())

        qty = fill.quantity
        price = fill.price
        signed = qty if fill.side == "BUY" else -qty
        old_q = pos.quantity
        new_q = old_q + signed

        if self.cost_basis == "fifo":
            for units, lot_price, lot_id in self._fifo(pos, signed, price, m, fill.fill_id):
                side = 1 if signed < 0 else -1  # the closed lot's side
                self.matches.append((pid, token, fill.fill_id, lot_id, units, lot_price, price,
                                     units * (price - lot_price) * side * m))
        elif old_q == 0 or _sign(old_q) == _sign(signed):
            # open or add in the same direction: re-average (old avg is 0 when flat)
            pos.average_price = (pos.average_price * abs(old_q) + price * qty) / abs(new_q)
        else:
            # reduce / close / flip: the closed part realizes against the old average
            closed = min(qty, abs(old_q))
            pos.realized_pnl += closed * (price - pos.average_price) * _sign(old_q) * m
            if new_q == 0:
                pos.average_price = 0.0
            elif _sign(new_q) != _sign(old_q):
                pos.average_price = price  # flip: the remainder opens at the fill price
            # else: partial close keeps the average
        pos.quantity = new_q
        pos.fees += fill.fee

        notional = qty * price * m
        if fill.side == "BUY":
            pos.buy_quantity += qty
            pos.buy_value += notional
            portfolio.cash -= notional + fill.fee
        else:
            pos.sell_quantity += qty
            pos.sell_value += notional
            portfolio.cash += notional - fill.fee
        return True

    @staticmethod
    def _fifo(pos: _Position, signed: int, price: float, m: float,
              fill_id: str | None) -> list[tuple[int, float, str | None]]:
        """FIFO: close from the oldest lot on, open a lot with what is left; returns the
        closes ``(units, lot price, lot's fill_id)``."""
        lots = pos.lots if pos.lots is not None else []
        pos.lots = lots
        left = abs(signed)
        closes = []
        if pos.quantity != 0 and _sign(pos.quantity) != _sign(signed):
            side = _sign(pos.quantity)
            while left and lots:
                units = min(left, lots[0][0])
                pos.realized_pnl += units * (price - lots[0][1]) * side * m
                closes.append((units, lots[0][1], lots[0][2]))
                lots[0][0] -= units
                left -= units
                if lots[0][0] == 0:
                    lots.pop(0)
        if left:
            lots.append([left, price, fill_id])
        units_open = sum(lot[0] for lot in lots)
        pos.average_price = (sum(lot[0] * lot[1] for lot in lots) / units_open
                             if units_open else 0.0)
        return closes

    def lots(self) -> list[tuple[str, int, int, float]]:
        """Open FIFO lots ``(portfolio_id, token, signed units, price)``, oldest first."""
        return [
            (pid, token, u * _sign(pos.quantity), p)
            for (pid, token), pos in sorted(self._positions.items())
            for u, p, _ in (pos.lots or [])
        ]

    # ---- reading ---------------------------------------------------------------------

    def multiplier(self, token: int) -> float:
        return self.multipliers.get(token, 1.0)

    def mark(self, token: int) -> float | None:
        if token in self._tick_marks:
            return self._tick_marks[token][1]
        if token in self._fill_marks:
            return self._fill_marks[token][1]
        return None

    def valuation(self, token: int, q: Units) -> float:
        """The price a position of ``q`` units is valued at: the mark, or under bid_ask the
        bid of a long / the ask of a short when the winning tick quoted it."""
        mark = self.mark(token)
        assert mark is not None
        if self.mark_mode == "last" or q == 0:
            return mark
        bid, ask = self._quotes.get(token, (None, None))
        side = bid if q > 0 else ask
        return mark if side is None else side

    def _position_row(self, pid: str, token: int, pos: _Position) -> dict[str, Any]:
        m = self.multiplier(token)
        mark = self.mark(token)
        assert mark is not None  # a position implies at least one fill of its instrument
        q = pos.quantity
        value = self.valuation(token, q)
        return {
            "portfolio_id": pid,
            "instrument_token": token,
            "quantity": q,
            "average_price": pos.average_price if q != 0 else 0.0,
            "last_price": mark,
            "realized_pnl": pos.realized_pnl,
            "unrealized_pnl": (value - pos.average_price) * q * m if q != 0 else 0.0,
            "fees": pos.fees,
            "multiplier": m,
            "market_value": q * value * m,
            "buy_quantity": pos.buy_quantity,
            "sell_quantity": pos.sell_quantity,
            "buy_value": pos.buy_value,
            "sell_value": pos.sell_value,
        }

    def positions(self) -> list[dict[str, Any]]:
        if self.currencies:
            return [self._fx_position_row(pid, token, pos)
                    for (pid, token), pos in sorted(self._positions.items())]
        return [
            self._position_row(pid, token, pos)
            for (pid, token), pos in sorted(self._positions.items())
        ]

    @staticmethod
    def _totals(rows: list[dict[str, Any]], cash: float) -> dict[str, float]:
        realized = sum(r["realized_pnl"] for r in rows)
        unrealized = sum(r["unrealized_pnl"] for r in rows)
        fees = sum(r["fees"] for r in rows)
        market_value = sum(r["market_value"] for r in rows)
        return {
            "cash": cash,
            "total_realized_pnl": realized,
            "total_unrealized_pnl": unrealized,
            "total_fees": fees,
            "total_pnl": realized + unrealized,
            "net_pnl": realized + unrealized - fees,
            "market_value": market_value,
            "equity": cash + market_value,
            "gross_exposure": sum(abs(r["market_value"]) for r in rows),
            "net_exposure": market_value,
        }

    def _portfolio_rows(self, pid: str) -> list[dict[str, Any]]:
        return [r for r in self.positions() if r["portfolio_id"] == pid]

    def portfolios(self) -> list[dict[str, Any]]:
        out = []
        for pid, pf in sorted(self._portfolios.items()):
            row: dict[str, Any] = {
                "portfolio_id": pid,
                "source": pf.source,
                "strategy_id": pf.strategy_id,
            }
            if self.currencies:
                row.update(self._fx_totals(self._portfolio_rows(pid), [pid]))
            else:
                row.update(self._totals(self._portfolio_rows(pid), pf.cash))
            out.append(row)
        return out

    def portfolio_ids(self) -> list[str]:
        return sorted(self._portfolios)

    def sources(self) -> list[str]:
        return sorted({pf.source for pf in self._portfolios.values()})

    def documents(self, portfolio_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {pid: self.portfolio(pid) for pid in portfolio_ids}

    def portfolio(self, portfolio_id: str) -> dict[str, Any]:
        if portfolio_id in self._portfolios:
            pf = self._portfolios[portfolio_id]
            rows = self._portfolio_rows(portfolio_id)
            out: dict[str, Any] = {
                "portfolio_id": portfolio_id,
                "source": pf.source,
                "strategy_id": pf.strategy_id,
                "positions": {str(r["instrument_token"]): r for r in rows},
            }
            out.update(self._fx_totals(rows, [portfolio_id]) if self.currencies
                       else self._totals(rows, pf.cash))
            return out
        source, _, rest = portfolio_id.rpartition("_")
        if rest == "Overall" and source in self.sources():
            return self._aggregate(source)
        raise KeyError(portfolio_id)

    def _aggregate(self, source: str) -> dict[str, Any]:
        pids = [pid for pid, pf in self._portfolios.items() if pf.source == source]
        rows = [r for r in self.positions() if r["portfolio_id"] in pids]
        by_token: dict[int, dict[str, Any]] = {}
        cost: dict[int, float] = {}
        for r in rows:
            token = r["instrument_token"]
            agg = by_token.setdefault(
                token,
                {
                    "instrument_token": token,
                    "quantity": 0,
                    "last_price": r["last_price"],
                    "multiplier": r["multiplier"],
                    "realized_pnl": 0.0,
                    "unrealized_pnl": 0.0,
                    "fees": 0.0,
                    "market_value": 0.0,
                    "buy_quantity": 0,
                    "sell_quantity": 0,
                    "buy_value": 0.0,
                    "sell_value": 0.0,
                },
            )
            for name in (
                "quantity",
                "realized_pnl",
                "unrealized_pnl",
                "fees",
                "market_value",
                "buy_quantity",
                "sell_quantity",
                "buy_value",
                "sell_value",
            ):
                agg[name] += r[name]
            cost[token] = cost.get(token, 0.0) + r["average_price"] * r["quantity"]
        for token, agg in by_token.items():
            q = agg["quantity"]
            agg["average_price"] = cost[token] / q if q != 0 else 0.0
        cash = sum(self._portfolios[pid].cash for pid in pids)
        out: dict[str, Any] = {
            "portfolio_id": f"{source}_Overall",
            "source": source,
            "positions": {str(t): by_token[t] for t in sorted(by_token)},
        }
        out.update(self._fx_totals(rows, pids) if self.currencies else self._totals(rows, cash))
        if self.currencies:
            return out
        # exposures of an aggregate net quantities per instrument first
        out["gross_exposure"] = sum(abs(a["market_value"]) for a in by_token.values())
        return out

    def aum(self) -> dict[str, Any]:
        by_source: dict[str, float] = {}
        if self.currencies and any(r["missing_rate"] for r in self.portfolios()):
            return {"total": None, "by_source": {}}
        for row in self.portfolios():
            by_source[row["source"]] = by_source.get(row["source"], 0.0) + row["equity"]
        return {"total": sum(by_source.values()), "by_source": by_source}


# --------------------------------------------------------------------------------------
# Test plumbing: event builders
# --------------------------------------------------------------------------------------

T0 = 1_795_600_550_000  # epoch milliseconds (2026-11-25T09:55:50Z)


def fill(
    strategy_id: str,
    token: int,
    side: str,
    quantity: float,  # an int, or a float with quantity_decimals > 0
    price: float,
    *,
    fee: float | None = None,
    ts: int | None = None,
    fill_id: str | None = None,
    source: str = "paper",
) -> dict[str, Any]:
    """An order_fill event dict (optional fields omitted when None)."""
    event: dict[str, Any] = {
        "event_type": "order_fill",
        "source": source,
        "quantity": quantity,
        "fill_price": price,
        "original_signal": {
            "strategy_id": strategy_id,
            "instrument_token": token,
            "signal_type": side,
        },
    }
    if fill_id is not None:
        event["fill_id"] = fill_id
    if ts is not None:
        event["ts"] = ts
    if fee is not None:
        event["fee"] = fee
    return event


def tick(token: int, price: float, ts: int | str | None = None, *, bid: float | None = None,
         ask: float | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "market_tick", "instrument_token": token}
    event["last_price"] = price
    if ts is not None:
        event["ts"] = ts
    event |= {k: v for k, v in (("bid", bid), ("ask", ask)) if v is not None}
    return event


# --------------------------------------------------------------------------------------
# Test plumbing: the engine seen through the same plain-Python interface
# --------------------------------------------------------------------------------------

ENGINE_FILE = Path(__file__).resolve().parents[1] / "pm_polars" / "engine" / "engine.py"


def engine_class() -> Any:
    """Import PortfolioEngine lazily; skip (not fail) only while the engine has not landed."""
    import pytest

    try:
        from pm_polars import PortfolioEngine
    except ImportError:
        if not ENGINE_FILE.exists():
            pytest.skip("pm_polars.PortfolioEngine has not landed yet")
        raise
    return PortfolioEngine


class EngineBook:
    """Adapter: PortfolioEngine frames -> the plain structures ReferenceBook returns."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @classmethod
    def create(
        cls, starting_cash: float = DEFAULT_STARTING_CASH, instruments: Any = None,
        cost_basis: str = "average", quantity_decimals: int = 0,
        account_currency: str = "INR", mark: str = "last",
    ) -> EngineBook:
        import polars as pl

        if instruments is not None and not isinstance(instruments, pl.DataFrame):
            instruments = pl.DataFrame(list(instruments))
        extra: dict[str, Any] = {} if cost_basis == "average" else {"cost_basis": cost_basis}
        if quantity_decimals:  # defaults are not passed
            extra["quantity_decimals"] = quantity_decimals
        if account_currency != "INR":
            extra["account_currency"] = account_currency
        if mark != "last":
            extra["mark"] = mark
        return cls(engine_class()(starting_cash=starting_cash, instruments=instruments,
                                  **extra))

    def lots(self) -> list[tuple[str, int, int, float]]:
        """Open lots as ``ReferenceBook.lots`` gives them."""
        frame = self.engine.lots().sort("portfolio_id", "instrument_token", "lot")
        return [(r["portfolio_id"], r["instrument_token"], r["quantity"], r["price"])
                for r in frame.to_dicts()]

    def apply(self, events: Any) -> list[tuple[Any, str]]:
        result = self.engine.apply(events)
        rejects = result.rejects
        assert "reason" in rejects.columns
        reasons = rejects["reason"].to_list()
        assert all(isinstance(r, str) and r for r in reasons), reasons
        return [(None, r) for r in reasons]

    def positions(self) -> list[dict[str, Any]]:
        return sorted(
            self.engine.positions().to_dicts(),
            key=lambda r: (r["portfolio_id"], r["instrument_token"]),
        )

    def portfolios(self) -> list[dict[str, Any]]:
        return sorted(self.engine.portfolios().to_dicts(), key=lambda r: r["portfolio_id"])

    def portfolio(self, portfolio_id: str) -> dict[str, Any]:
        return dict(self.engine.portfolio(portfolio_id))

    def documents(self, portfolio_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The documents of ``portfolio_ids`` in one engine call (the daemon's path)."""
        docs = self.engine.portfolio_documents(portfolio_ids)
        return {pid: dict(docs[pid]) for pid in portfolio_ids}  # KeyError: unknown, as above

    def aum(self) -> dict[str, Any]:
        return dict(self.engine.aum())

    def sources(self) -> list[str]:
        return sorted({r["source"] for r in self.portfolios()})


def make_book(
    kind: str, starting_cash: float = DEFAULT_STARTING_CASH, instruments: Any = None,
    cost_basis: str = "average", quantity_decimals: int = 0, account_currency: str = "INR",
    mark: str = "last",
) -> Any:
    """kind "reference" -> ReferenceBook, "engine" -> EngineBook (skips until it lands)."""
    if kind == "reference":
        return ReferenceBook(starting_cash=starting_cash, instruments=instruments,
                             cost_basis=cost_basis, quantity_decimals=quantity_decimals,
                             account_currency=account_currency, mark=mark)
    if kind == "engine":
        return EngineBook.create(starting_cash=starting_cash, instruments=instruments,
                                 cost_basis=cost_basis, quantity_decimals=quantity_decimals,
                                 account_currency=account_currency, mark=mark)
    raise ValueError(kind)


def position(book: Any, portfolio_id: str, token: int) -> dict[str, Any]:
    rows = [
        r
        for r in book.positions()
        if r["portfolio_id"] == portfolio_id and r["instrument_token"] == token
    ]
    assert len(rows) == 1, f"expected one position row for {(portfolio_id, token)}: {rows}"
    return dict(rows[0])


def portfolio_row(book: Any, portfolio_id: str) -> dict[str, Any]:
    rows = [r for r in book.portfolios() if r["portfolio_id"] == portfolio_id]
    assert len(rows) == 1, f"expected one portfolio row for {portfolio_id}: {rows}"
    return dict(rows[0])


# --------------------------------------------------------------------------------------
# Test plumbing: tolerance-aware comparison of two books
# --------------------------------------------------------------------------------------
#
# Tolerance (documented once, used by every comparison):
#   * integer quantities (quantity, buy_quantity, sell_quantity) and identifiers: exact.
#   * average_price: |a - b| <= REL * max(|a|, |b|)  -- a per-unit price never cancels, so
#     it must be accurate relative to itself (this is what catches underflow in a
#     cumulative-product formulation of partial closes).
#   * every other money value v of a position (realized, unrealized, market value, fees,
#     buy/sell value, last price): |a - b| <= REL * max(|a|, |b|, S_pos) where
#     S_pos = buy_value + sell_value + |quantity| * last_price * multiplier + |fees| is the
#     traded notional of the position. Realized / unrealized P&L are differences of large
#     notionals (closed * (price - avg)) and may legitimately be computed by a columnar
#     engine as differences of cumulative sums, so they can only be exact relative to the
#     notional they were derived from, not relative to their own (possibly ~0) value.
#   * portfolio money: S_pf = starting_cash + sum(S_pos over its positions);
#     aggregates / aum: S = sum over the portfolios involved.

REL = 1e-9


def _scale(row: Mapping[str, Any]) -> float:
    return float(
        abs(row["buy_value"])
        + abs(row["sell_value"])
        + abs(row["quantity"]) * abs(row["last_price"]) * abs(row["multiplier"])
        + abs(row["fees"])
    )


def same_quantity(got: Any, want: Units) -> bool:
    """``got`` (the engine's) is ``want`` (the reference's): equal integers, or for an exact
    Fraction the double nearest to it (what the engine's atoms / 10**d give)."""
    if isinstance(want, Fraction):
        return bool(got == float(want))
    return bool(got == want)


def close(a: Any, b: Any, scale: float = 0.0, rel: float = REL) -> bool:
    a = float(a)
    b = float(b)
    return bool(abs(a - b) <= rel * max(abs(a), abs(b), scale))


def _check(errors: list[str], what: str, got: Any, want: Any, scale: float, rel: float) -> None:
    if got is None or not close(got, want, scale, rel):
        errors.append(f"{what}: got={got!r} want={want!r} (scale={scale:.6g})")


POSITION_MONEY = (
    "last_price",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "market_value",
    "buy_value",
    "sell_value",
)
PORTFOLIO_MONEY = (
    "cash",
    "total_realized_pnl",
    "total_unrealized_pnl",
    "total_fees",
    "total_pnl",
    "net_pnl",
    "market_value",
    "equity",
    "gross_exposure",
    "net_exposure",
)
# Fields of eng.portfolio(pid) the spec guarantees; additive extras compared when present.
PORTFOLIO_DICT_REQUIRED = ("cash", "total_realized_pnl", "total_unrealized_pnl", "total_pnl")
PORTFOLIO_DICT_OPTIONAL = ("total_fees", "net_pnl", "market_value", "equity", "net_exposure")


def compare_books(
    got: Any, want: Any, starting_cash: float = DEFAULT_STARTING_CASH, rel: float = REL
) -> list[str]:
    """Differences between ``got`` and ``want`` (a ReferenceBook, or an EngineBook when
    comparing two engines); tolerances are scaled by ``want``'s notionals."""
    errors: list[str] = []

    # positions ----------------------------------------------------------------------
    got_pos = {(r["portfolio_id"], r["instrument_token"]): r for r in got.positions()}
    want_pos = {(r["portfolio_id"], r["instrument_token"]): r for r in want.positions()}
    if set(got_pos) != set(want_pos):
        errors.append(
            f"position keys differ: only got={sorted(set(got_pos) - set(want_pos))} "
            f"only want={sorted(set(want_pos) - set(got_pos))}"
        )
    scale_by_pid: dict[str, float] = {}
    for key in sorted(set(got_pos) & set(want_pos)):
        g, w = got_pos[key], want_pos[key]
        s = _scale(w)
        scale_by_pid[key[0]] = scale_by_pid.get(key[0], starting_cash) + s
        for name in ("quantity", "buy_quantity", "sell_quantity"):
            if not same_quantity(g[name], w[name]):
                errors.append(f"{key} {name}: got={g[name]!r} want={w[name]!r}")
        _check(errors, f"{key} multiplier", g["multiplier"], w["multiplier"], 0.0, rel)
        _check(errors, f"{key} average_price", g["average_price"], w["average_price"], 0.0, rel)
        for name in POSITION_MONEY:
            _check(errors, f"{key} {name}", g[name], w[name], s, rel)

    # strategy portfolios ---------------------------------------------------------------
    got_pf = {r["portfolio_id"]: r for r in got.portfolios()}
    want_pf = {r["portfolio_id"]: r for r in want.portfolios()}
    if set(got_pf) != set(want_pf):
        errors.append(f"portfolio ids differ: got={sorted(got_pf)} want={sorted(want_pf)}")
    common = sorted(set(got_pf) & set(want_pf))
    aggregates = [f"{source}_Overall" for source in want.sources()]
    got_docs, want_docs = got.documents(common + aggregates), want.documents(common + aggregates)
    for pid in common:
        g, w = got_pf[pid], want_pf[pid]
        s = scale_by_pid.get(pid, starting_cash)
        for name in ("source", "strategy_id"):
            if g[name] != w[name]:
                errors.append(f"{pid} {name}: got={g[name]!r} want={w[name]!r}")
        for name in PORTFOLIO_MONEY:
            _check(errors, f"{pid} {name}", g[name], w[name], s, rel)

        # the per-portfolio document
        errors.extend(_compare_document(pid, got_docs[pid], want_docs[pid], s, rel))

    # per-source aggregates and aum -----------------------------------------------------
    total_scale = 0.0
    for source in want.sources():
        pids = [pid for pid, r in want_pf.items() if r["source"] == source]
        s = sum(scale_by_pid.get(pid, starting_cash) for pid in pids)
        total_scale += s
        agg = f"{source}_Overall"
        errors.extend(_compare_document(agg, got_docs[agg], want_docs[agg], s, rel))
    got_aum, want_aum = got.aum(), want.aum()
    _check(errors, "aum total", got_aum.get("total"), want_aum["total"], total_scale, rel)
    for source in sorted(set(got_aum.get("by_source", {})) | set(want_aum["by_source"])):
        _check(
            errors,
            f"aum by_source[{source}]",
            got_aum["by_source"].get(source, 0.0),
            want_aum["by_source"].get(source, 0.0),
            total_scale,
            rel,
        )
    return errors


def _compare_document(
    pid: str, got: Mapping[str, Any], want: Mapping[str, Any], scale: float, rel: float
) -> list[str]:
    errors: list[str] = []
    if got.get("portfolio_id") != pid:
        errors.append(f"portfolio({pid!r})['portfolio_id'] = {got.get('portfolio_id')!r}")
    for name in PORTFOLIO_DICT_REQUIRED:
        _check(errors, f"portfolio({pid!r})[{name!r}]", got.get(name), want[name], scale, rel)
    for name in PORTFOLIO_DICT_OPTIONAL:
        if name in got:
            _check(errors, f"portfolio({pid!r})[{name!r}]", got[name], want[name], scale, rel)
    got_positions = got.get("positions")
    if not isinstance(got_positions, Mapping):
        errors.append(f"portfolio({pid!r})['positions'] is not a mapping: {got_positions!r}")
        return errors
    aggregate = pid.endswith("_Overall")
    for token, w in want["positions"].items():
        g = got_positions.get(token)
        if g is None:
            # an aggregate may leave out instruments whose net quantity is 0
            if not (aggregate and w["quantity"] == 0):
                errors.append(f"portfolio({pid!r}) positions lacks {token!r}")
            continue
        where = f"portfolio({pid!r}).positions[{token!r}]"
        if not same_quantity(g.get("quantity"), w["quantity"]):
            errors.append(f"{where} quantity: got={g.get('quantity')!r} want={w['quantity']!r}")
        s = _scale(w)
        for name in ("realized_pnl", "unrealized_pnl", "last_price"):
            _check(errors, f"{where} {name}", g.get(name), w[name], s, rel)
        if not aggregate:
            _check(
                errors,
                f"{where} average_price",
                g.get("average_price"),
                w["average_price"],
                0.0,
                rel,
            )
    extra = set(got_positions) - set(want["positions"])
    if extra:
        errors.append(f"portfolio({pid!r}) has unexpected positions {sorted(extra)}")
    return errors


def assert_books_match(
    got: Any, want: Any, starting_cash: float = DEFAULT_STARTING_CASH, rel: float = REL
) -> None:
    errors = compare_books(got, want, starting_cash, rel)
    assert not errors, f"{len(errors)} differences:\n" + "\n".join(errors[:40])
