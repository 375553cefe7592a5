"""A partition's Overall/aum contribution, kept as exact sums updated per published portfolio.

The contribution of a partition (format in ``contributions``) sums the rows its portfolios
were last published with. Recomputing it over every portfolio costs O(book) per batch; here
it is updated by what a batch publishes: a republished portfolio's old rows are taken away
and its new rows added. Every value is summed exactly (as an int, scaled by ``2**1074`` so
any double is a whole number; ~1,100-bit Python ints), so taking a row away is exact too
and the value written is the correctly rounded sum of the rows published (what
``math.fsum`` gives), whatever order they came and went in: no drift, however long the
daemon runs. Integer fields (quantities, open positions) come back exactly.

Quantities are summed as *atoms* (``10**-d`` units, ``d`` = ``--quantity-decimals``; units
at d = 0): a published position row shows units (``model_rows.unit``, an int or the double
nearest the decimal) and, at d > 0, carries its exact atoms under ``ATOMS``, which are what
is summed. So the contribution's quantities are exact integers at every d (``0.1 + 0.2`` is
3 atoms of ``10**-1``, a flat aggregate exactly 0); the aggregate script writes them back
as decimal units (``aggregate_lua``).

An aggregate position's ``last_price`` is the mark of the position published last with one
(conflated portfolios may show older marks; the freshest one wins), its ``multiplier`` the
first seen. A currency book (``fx_rows``): the totals also count the source's portfolios
published with ``missing_rate`` (``"missing_rate"`` in the contribution's totals; the
script nulls the money totals when it is > 0), each token keeps the fx columns last
published with it, and an inverse row's cost is summed on its line price ``-1/price`` (as
``fxviews.overall_positions``). Values are immutable per batch: :meth:`PartSums.updated` copies what it touches
(copy-on-write), so a failed commit keeps the previous sums.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable
from typing import Any

from pm_polars.publish.contributions import PORTFOLIO_SUMS, POSITION_SUMS

INTS = frozenset({"quantity", "buy_quantity", "sell_quantity", "open_positions",
                  "overnight_quantity", "day_buy_quantity", "day_sell_quantity",
                  "day_quantity"})
ATOMS = "_atoms"  # a position row's {quantity field: atoms} at quantity_decimals > 0
_SUMMED = [c for c in POSITION_SUMS if c not in ("cost", "cost0")]
_QUANTITY_SLOTS = [(i, c) for i, c in enumerate(_SUMMED) if c in INTS]
Rendered = tuple[dict[str, Any], list[dict[str, Any]]]  # as ``model_rows.Rendered``
FX_FACTS = ("pnl_currency", "inverse", "fx_rate", "missing_rate")  # ``fxviews``' columns


SCALE = 1074  # every double is an integer multiple of 2**-1074
_ONE = 1 << SCALE
_M53 = float(1 << 53)


def _exact(v: float | int) -> int:
    """``v * 2**SCALE`` as an exact int (doubles below 2**-1021, subnormal, are truncated)."""
    if type(v) is int:
        return v << SCALE
    m, e = math.frexp(v)
    shift = e + SCALE - 53
    n = int(m * _M53)  # exact: a double's significand has 53 bits
    return n << shift if shift >= 0 else n >> -shift


class _Sums:
    """Exact sums of some fields: ints scaled by ``2**SCALE`` (so float and int fields add
    exactly); read back correctly rounded (``n / 2**SCALE``) or, for int fields, exactly."""

    __slots__ = ("fields", "acc", "_values")

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        self.acc = [0] * len(fields)
        self._values: dict[str, Any] | None = None

    def copy(self) -> _Sums:
        out = _Sums.__new__(_Sums)
        out.fields, out.acc, out._values = self.fields, list(self.acc), None
        return out

    def replace(self, old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> None:
        """``old`` values away (None: nothing), ``new`` in; equal values cost nothing."""
        acc, self._values = self.acc, None
        for i, b in enumerate(new):
            a = old[i] if old is not None else None
            if a != b:
                acc[i] += (_exact(b) if b else 0) - (_exact(a) if a else 0)

    def values(self) -> dict[str, Any]:
        if self._values is None:
            self._values = {f: n >> SCALE if f in INTS else n / _ONE
                            for f, n in zip(self.fields, self.acc, strict=True)}
        return self._values


_SUMMED_AT = operator.itemgetter(*_SUMMED)
_TOTALS_AT = operator.itemgetter(*PORTFOLIO_SUMS)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _line(average: float, p: dict[str, Any]) -> float:
    """An inverse row's shown average price back on its line ``-1/price`` (``fx_rows``):
    an aggregate's average is that of the line, as ``fxviews.overall_positions`` takes it."""
    return -1.0 / average if average != 0 and p.get("inverse") else average


def _position_sums(p: dict[str, Any]) -> tuple[Any, ...]:
    """The summed values of a position row (quantities as atoms, see the docstring)."""
    values = (*_SUMMED_AT(p), _line(p["average_price"], p) * float(p["quantity"]),
              _line(p["overnight_average_price"], p) * float(p["overnight_quantity"]))
    atoms = p.get(ATOMS)
    if atoms is None:  # integer quantities: the units are the atoms
        return values
    out = list(values)
    for i, c in _QUANTITY_SLOTS:
        out[i] = atoms[c]
    return tuple(out)


class _Token:
    """One instrument's aggregate position in a source: sums, last mark, multiplier."""

    __slots__ = ("sums", "last_price", "prev_close", "multiplier", "fx", "_json")

    def __init__(self, multiplier: Any) -> None:
        self.sums = _Sums([*_SUMMED, "cost", "cost0"])
        self.last_price: float | None = None
        self.prev_close: float | None = None
        self.multiplier = multiplier
        self.fx: dict[str, Any] | None = None  # a currency book's: pnl_currency, inverse, fx_rate
        self._json: str | None = None

    def copy(self) -> _Token:
        out = _Token(self.multiplier)
        out.sums, out.last_price = self.sums.copy(), self.last_price
        out.prev_close, out.fx = self.prev_close, self.fx
        return out

    def replace(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self._json = None
        self.sums.replace(None if old is None else _position_sums(old), _position_sums(new))
        if new["last_price"] is not None:
            self.last_price = new["last_price"]
        if new["prev_close"] is not None:
            self.prev_close = new["prev_close"]
        if "pnl_currency" in new:  # the latest rate published with it
            self.fx = {c: new[c] for c in FX_FACTS}

    def json(self) -> str:
        if self._json is None:
            sums = self.sums.values()
            self._json = _dumps({**{c: sums[c] for c in POSITION_SUMS},
                                 "last_price": self.last_price, "prev_close": self.prev_close,
                                 "multiplier": self.multiplier, **(self.fx or {})})
        return self._json


class _Source:
    __slots__ = ("totals", "tokens", "trading_day", "missing")

    def __init__(self) -> None:
        self.totals = _Sums(list(PORTFOLIO_SUMS))
        self.tokens: dict[int, _Token] = {}
        self.trading_day: str | None = None  # the latest of its published rows
        # a currency book's: how many of its published portfolios miss a rate (None: a
        # book in the account currency only, whose contribution has no ``missing_rate``)
        self.missing: int | None = None

    def copy(self) -> _Source:
        out = _Source()
        out.totals, out.tokens = self.totals.copy(), dict(self.tokens)
        out.trading_day, out.missing = self.trading_day, self.missing
        return out


class PartSums:
    """Exact sums per source of one partition's published rows."""

    def __init__(self, sources: dict[str, _Source] | None = None) -> None:
        self.sources: dict[str, _Source] = sources or {}

    def updated(self, changes: Iterable[tuple[Rendered | None, Rendered]]) -> PartSums:
        """A new value: each ``(old, new)`` portfolio's old rows away, its new rows in
        (``old`` None: a portfolio not published before; a portfolio's source never
        changes, it is part of its id)."""
        out = PartSums(dict(self.sources))
        copied: set[object] = set()
        for old, new in changes:
            out._replace(new, old, copied)
        return out

    def _replace(self, new: Rendered, old: Rendered | None, copied: set[object]) -> None:
        """``new`` in place of ``old`` (the same portfolio)."""
        row, positions = new
        src = row["source"]
        source = self.sources.get(src)
        if source is None or ("s", src) not in copied:
            source = self.sources[src] = source.copy() if source is not None else _Source()
            copied.add(("s", src))
        day = row.get("trading_day")
        if day is not None and (source.trading_day is None or day > source.trading_day):
            source.trading_day = day
        if "missing_rate" in row:
            source.missing = ((source.missing or 0) + row["missing_rate"]
                              - (old is not None and bool(old[0].get("missing_rate"))))
        before = {} if old is None else {p["instrument_token"]: p for p in old[1]}
        source.totals.replace(None if old is None else _TOTALS_AT(old[0]), _TOTALS_AT(row))
        for p in positions:
            tok = p["instrument_token"]
            token = source.tokens.get(tok)
            if token is None or ("t", src, tok) not in copied:
                token = token.copy() if token is not None else _Token(p["multiplier"])
                source.tokens[tok] = token
                copied.add(("t", src, tok))
            token.replace(before.get(tok), p)

    def documents(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Per source: the contribution JSON (``contributions``) and its summed totals."""
        out = {}
        for src in sorted(self.sources):
            source = self.sources[src]
            totals = source.totals.values()
            if source.missing is not None:  # null money totals: the aggregate's are null
                totals = {**totals, "missing_rate": source.missing}
            inner = ",".join(f'"{t}":{source.tokens[t].json()}' for t in sorted(source.tokens))
            out[src] = (f'{{"totals":{_dumps(totals)},'
                        f'"trading_day":{_dumps(source.trading_day)},'
                        f'"positions":{{{inner}}}}}', totals)
        return out
