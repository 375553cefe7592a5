"""Typed views of the published read model, and the parsing shared by both readers.

The documents are those of ``pm_polars.engine.documents`` (strategy portfolios, written by
the daemon's checkpoint) and of the aggregate Lua script (``{source}_Overall``, ``aum``,
``prices``). Units: prices per unit, quantities signed (``+`` long, ``-`` short), money in
account currency, ``ts`` integer nanoseconds since the Unix epoch, UTC.

Forward compatibility: writers only ever *add* fields. A field this module does not know is
kept, as published, in the model's ``extra`` dict (and written back by ``as_dict``), so an
old reader keeps working against a newer daemon. A published ``null`` (the writers' spelling
of a missing or non-finite number) reads as ``nan`` in a float field. A known field that is
missing or of the wrong type raises :class:`DocumentError` naming the key and the field.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

OVERALL_STRATEGY = "Overall"


class DocumentError(ValueError):
    """A published value that cannot be read (not JSON, or a known field missing/mistyped)."""


@dataclass(frozen=True)
class Position:
    """One position of a portfolio (flat positions, ``quantity == 0``, included).

    ``portfolio_id`` is not a published position field: it comes from the key/document the
    position was read from. ``average_price``/``last_price`` per unit; ``quantity`` signed;
    ``buy_quantity``/``sell_quantity`` total units bought/sold (>= 0); money fields
    (``realized_pnl``, ``unrealized_pnl``, ``fees``, ``market_value``, ``buy_value``,
    ``sell_value``) in account currency; ``multiplier`` the contract multiplier.
    Quantities (``quantity``, ``buy_quantity``, ... ``day_quantity``) are ``int`` whenever
    the published value is integral (always for integer feeds) and ``float`` units for a
    fractional one (a daemon run with ``--quantity-decimals``, e.g. ``0.015``).
    """

    portfolio_id: str
    instrument_token: int
    quantity: int | float
    average_price: float
    last_price: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    multiplier: float
    market_value: float
    buy_quantity: int | float
    sell_quantity: int | float
    buy_value: float
    sell_value: float
    # today's figures (``engine.dayfigures``); defaults when read from an older writer
    overnight_quantity: int | float = 0
    overnight_average_price: float = 0.0
    prev_close: float | None = None  # null before the first roll
    day_buy_quantity: int | float = 0
    day_sell_quantity: int | float = 0
    day_buy_value: float = 0.0
    day_sell_value: float = 0.0
    day_quantity: int | float = 0
    day_pnl: float = 0.0
    day_realized_pnl: float = 0.0
    day_fees: float = 0.0
    day_carried_pnl: float = 0.0
    day_trading_pnl: float = 0.0
    m2m: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.quantity != 0

    def as_dict(self) -> dict[str, Any]:
        """The published position object (no ``portfolio_id``; ``extra`` merged back)."""
        out = {name: getattr(self, name) for name in POSITION_FIELDS}
        return {**out, **self.extra}


@dataclass(frozen=True)
class Portfolio:
    """One published portfolio: a strategy (``{source}_{strategy_id}``) or an aggregate
    ``{source}_Overall`` (``strategy_id == "Overall"``).

    Money in account currency: ``equity = cash + market_value``, ``total_pnl = realized +
    unrealized``, ``net_pnl = total_pnl - total_fees``, ``gross_exposure = sum |market
    value|``, ``net_exposure = sum market value``. ``open_positions`` counts non-flat
    positions. ``positions`` maps instrument token -> :class:`Position`, in token order.
    Today (``trading_day``, ISO date): ``m2m`` (change of realized + unrealized since the
    roll, gross of fees), ``day_net_pnl = m2m - day_fees``, ``day_pnl`` (today's trades
    alone), ``m2m = day_carried_pnl + day_trading_pnl`` (definitions in the README).
    """

    portfolio_id: str
    source: str
    strategy_id: str
    cash: float
    total_realized_pnl: float
    total_unrealized_pnl: float
    total_fees: float
    total_pnl: float
    net_pnl: float
    market_value: float
    equity: float
    gross_exposure: float
    net_exposure: float
    open_positions: int
    trading_day: str | None = None
    day_pnl: float = 0.0
    m2m: float = 0.0
    day_realized_pnl: float = 0.0
    day_fees: float = 0.0
    day_carried_pnl: float = 0.0
    day_trading_pnl: float = 0.0
    day_net_pnl: float = 0.0
    positions: dict[int, Position] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_aggregate(self) -> bool:
        """True for the ``{source}_Overall`` documents (sums over the source's strategies)."""
        return self.strategy_id == OVERALL_STRATEGY

    def position_list(self, open_only: bool = False) -> list[Position]:
        """Positions in token order; ``open_only`` drops flat ones."""
        return [p for p in self.positions.values() if p.is_open or not open_only]

    def as_dict(self) -> dict[str, Any]:
        """The published document (``extra`` merged back; ``null`` numbers come back as nan)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in PORTFOLIO_FIELDS}
        out["positions"] = {str(t): p.as_dict() for t, p in self.positions.items()}
        return {**out, **self.extra}


@dataclass(frozen=True)
class Aum:
    """Assets under management: ``total`` and ``by_source`` are sums of strategy equity
    (account currency)."""

    total: float
    by_source: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    m2m: float = math.nan  # today's m2m summed over the strategies (nan: not published)
    day_net_pnl: float = math.nan  # today's m2m - day_fees summed (nan: not published)

    def as_dict(self) -> dict[str, Any]:
        day = {k: v for k, v in (("m2m", self.m2m), ("day_net_pnl", self.day_net_pnl))
               if not math.isnan(v)}
        return {"total": self.total, "by_source": dict(self.by_source), **day, **self.extra}


class Price(NamedTuple):
    """The latest tick of an instrument: ``last_price`` per unit, ``ts`` ns UTC (or None),
    and its quote, ``bid``/``ask`` per unit (None when the tick carried none)."""

    last_price: float
    ts: int | None
    bid: float | None = None
    ask: float | None = None


@dataclass(frozen=True)
class Update:
    """One ``portfolio-updates`` message: the portfolios one daemon batch rewrote, and the
    writer's clock at that batch (``ts``, ns UTC)."""

    portfolio_ids: list[str]
    ts: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Overview:
    """Every portfolio in the index and the aum, read in one transaction."""

    portfolios: dict[str, Portfolio]
    aum: Aum | None


# ------------------------------------------------------------------ field tables
def _kinds(cls: type, skip: tuple[str, ...]) -> dict[str, str]:
    """Field name -> "int" | "float" | "str" | "str | None" (annotations are strings)."""
    return {f.name: str(f.type) for f in fields(cls) if f.name not in skip}


def _defaults(cls: type, skip: tuple[str, ...]) -> dict[str, Any]:
    """Fields an older writer did not publish (the day figures) and their defaults."""
    return {f.name: f.default for f in fields(cls)
            if f.name not in skip and not isinstance(f.default, type(MISSING))}


POSITION_KINDS = _kinds(Position, ("portfolio_id", "extra"))
PORTFOLIO_KINDS = _kinds(Portfolio, ("positions", "extra"))
DEFAULTS = {**_defaults(Position, ("portfolio_id", "extra")),
            **_defaults(Portfolio, ("positions", "extra"))}
POSITION_FIELDS = tuple(POSITION_KINDS)
PORTFOLIO_FIELDS = tuple(PORTFOLIO_KINDS)


# ------------------------------------------------------------------ conversion
def text(value: str | bytes) -> str:
    """Redis replies are ``str`` with ``decode_responses=True``, else ``bytes``."""
    return value.decode() if isinstance(value, bytes) else value


def _convert(kind: str, value: Any, where: str, name: str) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        if kind == "float | None" and value in (None, ""):
            return None
        if kind in ("float", "float | None"):
            if value is None or value == "":
                return math.nan
            if isinstance(value, bool):
                raise TypeError("boolean")
            return float(value)
        if kind == "int | float":  # a quantity: an int when integral, else float units
            return _quantity(value)
        if kind == "int":
            if isinstance(value, bool) or value is None or value == "":
                raise TypeError("no integer")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("not an integer")
                return int(value)
            return int(value)
        if kind == "str | None" and value in (None, ""):
            return None
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"{where}: field {name!r}={value!r} is not {kind}: {exc}") from exc


def _quantity(value: Any) -> int | float:
    """A published quantity: JSON ``75``/``0.015`` or hash text ``"75"``/``"0.015"``; an
    ``int`` when integral (``75.0`` too), else the float (refused: non-finite, bool)."""
    if isinstance(value, bool) or value is None or value == "":
        raise TypeError("no number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return int(number) if number.is_integer() else number


def _split(
    data: Mapping[str, Any], kinds: Mapping[str, str], where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(known fields converted, unknown fields as published)``."""
    known: dict[str, Any] = {}
    for name, kind in kinds.items():
        if name not in data:
            if name in DEFAULTS:
                known[name] = DEFAULTS[name]
                continue
            raise DocumentError(f"{where}: missing field {name!r}")
        known[name] = _convert(kind, data[name], where, name)
    extra = {k: v for k, v in data.items() if k not in kinds}
    return known, extra


def load_json(raw: str | bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise DocumentError(f"{where}: not JSON: {exc}") from exc


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DocumentError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------ parsers
def parse_position(portfolio_id: str, data: Mapping[str, Any], where: str) -> Position:
    """A position from its document object or its hash (values as text, ``""`` = null)."""
    data = {text(k): text(v) if isinstance(v, bytes) else v
            for k, v in _object(data, where).items()}
    known, extra = _split(data, POSITION_KINDS, where)
    return Position(portfolio_id=portfolio_id, **known, extra=extra)


def parse_portfolio(data: Any, where: str) -> Portfolio:
    """A portfolio from its decoded JSON document."""
    doc = _object(data, where)
    known, extra = _split(doc, PORTFOLIO_KINDS, where)
    extra.pop("positions", None)
    raw_positions = _object(doc.get("positions", {}), f"{where}.positions")
    pid = known["portfolio_id"]
    positions = []
    for token, pos in raw_positions.items():
        pos = dict(_object(pos, f"{where}.positions[{token}]"))
        pos.setdefault("instrument_token", token)
        positions.append(parse_position(pid, pos, f"{where}.positions[{token}]"))
    positions.sort(key=lambda p: p.instrument_token)
    return Portfolio(**known, positions={p.instrument_token: p for p in positions}, extra=extra)


def portfolio_from_raw(raw: str | bytes | None, key: str) -> Portfolio | None:
    """``GET portfolio:{pid}`` reply -> Portfolio (None when the key does not exist)."""
    return None if raw is None else parse_portfolio(load_json(raw, key), key)


def portfolios_from_mget(
    ids: list[str], keys: list[str], raws: list[Any]
) -> dict[str, Portfolio]:
    """``MGET`` of ``keys`` (the documents of ``ids``) -> ``{pid: Portfolio}``, absent left out."""
    out: dict[str, Portfolio] = {}
    for pid, key, raw in zip(ids, keys, raws, strict=True):
        pf = portfolio_from_raw(raw, key)
        if pf is not None:
            out[pid] = pf
    return out


def position_from_hash(
    portfolio_id: str, mapping: Mapping[Any, Any], key: str
) -> Position | None:
    """``HGETALL position:{pid}:{token}`` reply -> Position (None when empty/absent)."""
    return parse_position(portfolio_id, mapping, key) if mapping else None


def aum_from_raw(raw: str | bytes | None, key: str) -> Aum | None:
    """``GET aum`` reply -> Aum (None when never written)."""
    if raw is None:
        return None
    data = dict(_object(load_json(raw, key), key))
    total = _convert("float", data.pop("total", None), key, "total")
    by_source = _object(data.pop("by_source", {}), f"{key}.by_source")
    day = {k: _convert("float", data.pop(k), key, k) for k in ("m2m", "day_net_pnl")
           if k in data}
    return Aum(
        total=total,
        by_source={str(s): _convert("float", v, key, f"by_source.{s}")
                   for s, v in sorted(by_source.items())},
        extra=data, **day,
    )


def prices_from_hash(mapping: Mapping[Any, Any], key: str) -> dict[int, Price]:
    """``HGETALL prices`` reply -> ``{token: Price}`` in token order."""
    out: dict[int, Price] = {}
    for tok, raw in mapping.items():
        where = f"{key}[{text(tok)}]"
        data = _object(load_json(raw, where), where)
        price = _convert("float", data.get("last_price"), where, "last_price")
        ts, quote = data.get("ts"), [data.get(k) for k in ("bid", "ask")]
        bid, ask = (None if v is None else _convert("float", v, where, k)
                    for v, k in zip(quote, ("bid", "ask"), strict=True))
        out[_convert("int", text(tok), where, "token")] = Price(
            price, None if ts is None else _convert("int", ts, where, "ts"), bid, ask)
    return dict(sorted(out.items()))


def update_from_message(data: str | bytes, channel: str) -> Update:
    """A ``portfolio-updates`` payload -> Update."""
    msg = dict(_object(load_json(data, channel), channel))
    ids = msg.pop("portfolio_ids", None)
    if not isinstance(ids, list) or not all(isinstance(p, str) for p in ids):
        raise DocumentError(f"{channel}: 'portfolio_ids' is not a list of strings: {ids!r}")
    ts = _convert("int", msg.pop("ts", None), channel, "ts")
    return Update(portfolio_ids=ids, ts=ts, extra=msg)


def update_or_none(data: str | bytes, channel: str) -> Update | None:
    """Like :func:`update_from_message`, but a malformed message is logged and gives None."""
    try:
        return update_from_message(data, channel)
    except DocumentError as exc:
        log.warning("event=bad_update_message channel=%s error=%s", channel, exc)
        return None
