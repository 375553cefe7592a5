"""One batch's writes of the published read model, encoded for the checkpoint's MULTI.

For the portfolios a batch publishes (``render``; which ones: ``daemon.read_model``):

* ``portfolio:{pid}`` documents (one MSET): the JSON of
  ``pm_polars.engine.documents`` (portfolio fields in ``views.PORTFOLIO_COLUMNS`` order,
  then ``"positions": {"<token>": {...}}``);
* ``position:{pid}:{token}`` hashes of their positions (numbers as ``str``/``repr``, ``""``
  for null) and the index ``portfolios`` (SADD);
* each changed partition's ``{source}_Overall`` and aum contributions (format in
  ``contributions``) in the ``pm:parts`` hashes: exact sums of the rows its portfolios
  were last published with, updated by what each batch publishes (``part_sums``).

The numbers follow ``views.positions_view``/``portfolios_view`` operation for operation
(same IEEE results; sums may differ from Polars' in the last bit), the mark rule too
(``mark="bid_ask"``: unrealized P&L and market value at the bid of a long, the ask of a
short, ``marks.valuation_of``). Why Python and not
Polars here: rendering is O(positions of the published portfolios), a few dozen rows
per batch, and on this box a Polars query costs ~0.1 ms eager and ~0.25 ms per lazy node
whatever the size (the columnar version of this module took 9 ms per batch, this one
~0.3 ms). Per position it costs a few microseconds, so it stays below the Polars version
up to roughly a thousand changed positions per batch. The rows are selected once per batch
(``state_rows``).
"""

from __future__ import annotations

import json
import math
import operator
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pm_polars.engine import views
from pm_polars.engine.dayfigures import PORTFOLIO_DAY_SUMS
from pm_polars.engine.marks import valuation_of
from pm_polars.publish import fx_rows
from pm_polars.publish.contributions import AUM_SUMS
from pm_polars.publish.fx_rows import FxFacts
from pm_polars.publish.keys import Keys
from pm_polars.publish.part_sums import ATOMS, PartSums, Rendered
from pm_polars.publish.resp import arg, command, header
from pm_polars.publish.state_rows import StateRows

POSITION_FIELDS = [c for c in views.POSITION_COLUMNS if c != "portfolio_id"]
_STATE = ["portfolio_id", "instrument_token", "quantity", "average_price", "realized_pnl",
          "fees", "buy_quantity", "sell_quantity", "buy_value", "sell_value", "multiplier",
          "overnight_quantity", "overnight_average_price", "day_buy_quantity",
          "day_sell_quantity", "day_buy_value", "day_sell_value", "day_realized_pnl",
          "day_fees"]
_DAY_SUMS = PORTFOLIO_DAY_SUMS
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_HEADS = [f"${len(k)}\r\n{k}\r\n" for k in POSITION_FIELDS]  # field names as RESP
_POSITION_JSON = "{" + ",".join(f"{_dumps(k)}:%s" for k in POSITION_FIELDS) + "}"
_position_values = operator.itemgetter(*POSITION_FIELDS)
_NUMBERS = frozenset((int, float))
FX_FIELDS = [*POSITION_FIELDS, *fx_rows.FX_POSITION_COLUMNS]  # a currency book's positions
_fx_values = operator.itemgetter(*FX_FIELDS)


@dataclass
class Published:
    """Encoded commands (``count`` of them) and what they publish."""

    commands: list[bytes] = field(default_factory=list)
    count: int = 0
    documents: list[str] = field(default_factory=list)  # portfolio ids rewritten
    sources: list[str] = field(default_factory=list)  # Overall contributions written
    aum: bool = False

    def add(self, data: bytes) -> None:
        self.commands.append(data)
        self.count += 1


def _position_texts(p: dict[str, Any]) -> tuple[str, bytes, str]:
    """A position's token, its hash fields as RESP and its JSON object.

    Hash field texts: ``repr`` of floats, ``str`` of ints, ``""`` for null.

    The JSON equals ``_dumps({k: p[k] for k in POSITION_FIELDS})``. When every value is a
    finite float or an int (the usual case) it is the hash texts in a template: ``json``
    writes those as ``repr``/``str`` too, so each number is formatted once for both.
    """
    if "pnl_currency" in p:  # a currency book's row: the fx columns too (no template)
        values = _fx_values(p)
        texts = [_text(v) for v in values]
        data = b"".join(arg(x) for k, t in zip(FX_FIELDS, texts, strict=True)
                        for x in (k, t))
        return (str(p["instrument_token"]), data,
                _dumps(dict(zip(FX_FIELDS, values, strict=True))))
    values = _position_values(p)
    texts = [repr(v) if isinstance(v, float) else "" if v is None else str(v) for v in values]
    body = "".join([f"{h}${len(t)}\r\n{t}\r\n" for h, t in zip(_HEADS, texts, strict=True)])
    if _NUMBERS.issuperset(map(type, values)) and all(map(math.isfinite, values)):
        doc = _POSITION_JSON % tuple(texts)
    else:
        doc = _dumps(dict(zip(POSITION_FIELDS, values, strict=True)))
    data = body.encode() if body.isascii() else b"".join(  # RESP lengths count bytes
        arg(x) for k, t in zip(POSITION_FIELDS, texts, strict=True) for x in (k, t))
    return str(p["instrument_token"]), data, doc


def _text(v: Any) -> str:
    """A position hash field's text: ``repr`` of a float, ``true``/``false`` of a flag,
    ``str`` of an int or a code, ``""`` for null."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else "" if v is None else str(v)


def unit(atoms: int, scale: int) -> int | float:
    """A state quantity (``atoms`` of ``1/scale`` units) in units as documents show it: an
    ``int`` when integral (integer feeds keep their integers), else the double nearest the
    exact decimal (Python's int / int is correctly rounded), e.g. 15 atoms at 10**3 -> 0.015."""
    whole, rest = divmod(atoms, scale)
    return whole if rest == 0 else atoms / scale


def position_rows(rows: StateRows, members: Mapping[str, str],
                  scale: int = 1, mark_mode: str = "last",
                  fx: FxFacts | None = None) -> list[dict[str, Any]]:
    """``views.positions_view`` rows of ``members`` (sorted by portfolio, token) as dicts;
    ``scale``: atoms per unit of the state's quantities (``EngineConfig.quantity_scale``),
    whose quantities are published in units (``unit``); at ``scale`` > 1 a row also keeps
    its exact atoms under ``part_sums.ATOMS`` (summed by ``part_sums``); ``mark_mode``:
    ``EngineConfig.mark``; ``fx``: a currency book's facts (``fx_rows``: rows follow
    ``fxviews.positions_view``, valued on line prices, shown in prices, with the fx
    columns; ``rows.marks`` must hold the FX instruments' marks)."""
    m_tok, m_tick, m_fill, m_roll, m_bid, m_ask = (
        rows.mark_columns.index(c) for c in
        ("instrument_token", "tick_price", "fill_price", "roll_price", "tick_bid", "tick_ask"))
    marks = {r[m_tok]: r[m_tick] if r[m_tick] is not None else r[m_fill]
             for r in rows.marks.values()}
    closes = {r[m_tok]: r[m_roll] for r in rows.marks.values()}
    quotes = ({r[m_tok]: (r[m_bid], r[m_ask]) for r in rows.marks.values()}
              if mark_mode != "last" else {})
    rates = fx.rates(marks) if fx is not None else {}
    at = [rows.position_columns.index(c) for c in _STATE]
    out = []
    for row in rows.positions:
        (pid, tok, q, avg, real, fees, bq, sq, bv, sv, m,
         q0, avg0, dbq, dsq, dbv, dsv, dreal, dfees) = (row[i] for i in at)
        if pid not in members:
            continue
        atoms = None
        if scale == 1:
            day_q = dbq - dsq
            day_qf, moved = float(day_q), float(q - q0)
        else:  # units, the money from them as ``views`` computes it (differences of units)
            atoms = {"quantity": q, "buy_quantity": bq, "sell_quantity": sq,
                     "overnight_quantity": q0, "day_buy_quantity": dbq,
                     "day_sell_quantity": dsq, "day_quantity": dbq - dsq}
            day_q = unit(dbq - dsq, scale)
            q, bq, sq, q0, dbq, dsq = (unit(x, scale) for x in (q, bq, sq, q0, dbq, dsq))
            day_qf, moved = float(dbq) - float(dsq), float(q) - float(q0)
        mark, pc = shown_mark, shown_pc = marks.get(tok), closes.get(tok)
        inv = fx is not None and fx.facts(tok)[1]
        if inv:  # valued on the line price -1/price (``currencies``)
            mark, pc = fx_rows.line(mark, True), fx_rows.line(pc, True)
        qf = float(q)
        value = mark  # the price unrealized P&L and market value use (``marks.valuation``)
        if quotes:
            bid, ask = quotes.get(tok, (None, None))
            if inv:
                bid, ask = fx_rows.line(bid, True), fx_rows.line(ask, True)
            value = valuation_of(mark_mode, q, mark, bid, ask)
        unreal = ((value - avg) * qf * m if value is not None else None) if q != 0 else 0.0
        mv = qf * value * m if value is not None else 0.0
        flow = dsv - dbv
        if mark is None:
            day_pnl = trading = None
        else:
            day_pnl = flow + day_qf * mark * m
            trading = flow + moved * mark * m
        carried = (float(q0) * (mark - pc) * m if mark is not None and pc is not None
                   else None) if q0 != 0 else 0.0
        m2m = carried + trading if carried is not None and trading is not None else None
        out.append({"portfolio_id": pid, "instrument_token": tok, "quantity": q,
                    "average_price": avg, "last_price": mark, "realized_pnl": real,
                    "unrealized_pnl": unreal, "fees": fees, "multiplier": m,
                    "market_value": mv, "buy_quantity": bq, "sell_quantity": sq,
                    "buy_value": bv, "sell_value": sv, "overnight_quantity": q0,
                    "overnight_average_price": avg0, "prev_close": pc,
                    "day_buy_quantity": dbq, "day_sell_quantity": dsq, "day_buy_value": dbv,
                    "day_sell_value": dsv, "day_quantity": day_q, "day_pnl": day_pnl,
                    "day_realized_pnl": dreal, "day_fees": dfees, "day_carried_pnl": carried,
                    "day_trading_pnl": trading, "m2m": m2m})
        if fx is not None:
            out[-1].update(last_price=shown_mark, prev_close=shown_pc)
            fx_rows.shown(out[-1], fx, rates)
        if atoms is not None:
            out[-1][ATOMS] = atoms
    return out


def portfolio_rows(rows: StateRows, members: Mapping[str, str],
                   positions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``views.portfolios_view`` rows of ``members`` (sorted by id) as dicts."""
    sums: dict[str, list[float]] = {}
    day: dict[str, list[float]] = {}
    for p in positions:
        acc = sums.setdefault(p["portfolio_id"], [0.0, 0.0, 0.0, 0.0, 0.0, 0])
        acc[0] += p["realized_pnl"]
        acc[1] += p["unrealized_pnl"] or 0.0
        acc[2] += p["fees"]
        acc[3] += p["market_value"]
        acc[4] += abs(p["market_value"])
        acc[5] += p["quantity"] != 0
        dacc = day.setdefault(p["portfolio_id"], [0.0] * len(_DAY_SUMS))
        for i, c in enumerate(_DAY_SUMS):
            dacc[i] += p[c] or 0.0
    at = [rows.cash_columns.index(c) for c in ("portfolio_id", "source", "strategy_id", "cash")]
    out = []
    for row in rows.cash:
        pid, source, strategy, money = (row[i] for i in at)
        if pid not in members:
            continue
        real, unreal, fees, mv, gross, n = sums.get(pid, (0.0, 0.0, 0.0, 0.0, 0.0, 0))
        figures = dict(zip(_DAY_SUMS, day.get(pid, [0.0] * len(_DAY_SUMS)), strict=True))
        out.append({"portfolio_id": pid, "source": source, "strategy_id": strategy,
                    "cash": money, "total_realized_pnl": real, "total_unrealized_pnl": unreal,
                    "total_fees": fees, "total_pnl": real + unreal,
                    "net_pnl": real + unreal - fees, "market_value": mv,
                    "equity": money + mv, "gross_exposure": gross, "net_exposure": mv,
                    "open_positions": int(n), "trading_day": rows.trading_day, **figures,
                    "day_net_pnl": figures["m2m"] - figures["day_fees"]})
    return out


def render(rows: StateRows, pids: Collection[str], scale: int = 1,
           mark: str = "last", fx: FxFacts | None = None) -> dict[str, Rendered]:
    """Each of ``pids``' published rows: its portfolio row and its position rows (in token
    order), following ``views.positions_view``/``portfolios_view`` (``rows``: their state,
    see ``state_rows``; ``scale``: atoms per unit of its quantities; ``mark``:
    ``EngineConfig.mark``; ``fx``: a currency book's facts, rows following ``fxviews``,
    see ``fx_rows``)."""
    members = dict.fromkeys(pids, "")
    positions = position_rows(rows, members, scale, mark, fx)
    held: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in positions:
        held[p["portfolio_id"]].append(p)
    return {row["portfolio_id"]: (row, held.get(row["portfolio_id"], []))
            for row in (portfolio_rows(rows, members, positions) if fx is None else
                        fx_rows.portfolio_rows(rows.cash, rows.cash_columns, members,
                                               positions, fx.account, rows.trading_day))}


def publish_rows(rendered: Mapping[str, Rendered], parts: Mapping[str, PartSums],
                 keys: Keys, group: str) -> Published:
    """Commands publishing the ``rendered`` portfolios (documents, position hashes, index)
    and the contributions of ``parts`` (part name -> the exact sums of that partition's
    rows as published after this batch; see ``part_sums`` and ``daemon.read_model``).
    """
    out = Published()
    pairs: list[str] = []
    nargs = 2 * len(POSITION_FIELDS)
    for pid in sorted(rendered):
        row, held = rendered[pid]
        mine = [_position_texts(p) for p in held]
        for p, (tok, body, _) in zip(held, mine, strict=True):
            n = nargs if "pnl_currency" not in p else 2 * len(FX_FIELDS)
            out.add(header("HSET", keys.position(pid, tok), n) + body)
        inner = ",".join([f"{_dumps(tok)}:{doc}" for tok, _, doc in mine])
        pairs += [keys.portfolio(pid), f'{_dumps(row)[:-1]},"positions":{{{inner}}}}}']
        out.documents.append(pid)
    if pairs:
        out.add(command("MSET", *pairs))
        out.add(command("SADD", keys.index, *out.documents))
    _contributions(out, parts, keys, group)
    return out


def _contributions(out: Published, parts: Mapping[str, PartSums], keys: Keys,
                   group: str) -> None:
    """HSET of each partition's Overall contribution per source and its aum contribution."""
    by_source: dict[str, list[str]] = defaultdict(list)
    aum: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for part in sorted(parts):
        for src, (doc, totals) in parts[part].documents().items():
            by_source[src] += [part, doc]
            aum[part][src] = totals
    for src, fields in sorted(by_source.items()):
        out.add(command("HSET", keys.overall_parts(group, src), *fields))
    out.sources = sorted(by_source)
    if aum:
        fields = []
        for part, per in sorted(aum.items()):
            # a source with a portfolio missing a rate has no equity (``fxviews.aum``)
            eq = {src: None if t.get("missing_rate") else t["equity"]
                  for src, t in per.items()}
            known = None not in eq.values()
            day = {c: math.fsum(t[c] for t in per.values()) if known else None
                   for c in AUM_SUMS}
            fields += [part, _dumps({"total": sum(eq.values()) if known else None,
                                     "by_source": eq, **day})]
        out.add(command("HSET", keys.aum_parts(group), *fields))
        out.aum = True
