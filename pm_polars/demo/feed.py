"""Deterministic synthetic feed of fills and ticks in the production wire format.

The same ``seed`` always yields the same bytes (``random.Random`` is platform-stable).
Per event the generator draws, in this order of precedence:

* a malformed record (``malformed_rate``): truncated JSON, garbage bytes, a zero or
  negative quantity, an unknown ``signal_type``, a missing token, a bad tick price;
* a duplicate redelivery of a recent valid fill (``duplicate_rate``), byte-identical;
* a fill (``fill_rate``) that opens, adds to, reduces, closes or flips a position, priced
  off the current mark with the portfolio's own edge (``EDGE_BPS`` range: some strategies
  earn the spread, others pay it) plus noise, so the demo shows winners and losers;
* otherwise a market tick: a geometric random walk on the instrument's tick grid.

Timestamps are epoch milliseconds advancing 1..20 ms per event. Fees are a flat 20 plus
0.005 % of notional (brokerage plus exchange charges and taxes). Messages carry their Kafka topic and key
(``portfolio_id`` for fills, the instrument token for ticks) so a producer can
publish the very same feed; :func:`generate_batches` yields only the values.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pm_polars.demo.catalog import (
    INSTRUMENT_BY_TOKEN,
    TICKS_TOPIC,
    Instrument,
    fills_topic,
    portfolio_id,
    strategy_portfolios,
)

START_TS_MS = 1_795_600_000_000
FLAT_FEE = 20.0
FEE_RATE = 0.00005
EDGE_BPS = (-1.0, 3.0)  # per-portfolio price improvement vs the mark, basis points
NOISE_BPS = 0.5
MALFORMED_KINDS = (
    "truncated_json",
    "not_json",
    "zero_quantity",
    "negative_quantity",
    "bad_signal_type",
    "missing_token",
    "bad_tick_price",
)


class Message(NamedTuple):
    """One Kafka record: topic, key and the raw JSON value."""

    topic: str
    key: bytes
    value: bytes


@dataclass
class FeedStats:
    """What a generator run produced; filled in while the generator is consumed."""

    events: int = 0
    ticks: int = 0
    fills: int = 0
    duplicates: int = 0
    malformed: int = 0


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _on_grid(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 2)


class _FeedState:
    """Mutable state of one generator run: prices, positions, clocks and counters."""

    def __init__(self, rng: random.Random, n_strategies: int | None) -> None:
        self.rng = rng
        self.books = strategy_portfolios(n_strategies)
        tokens = sorted({t for _, s in self.books for t in s.tokens})
        self.instruments: list[Instrument] = [INSTRUMENT_BY_TOKEN[t] for t in tokens]
        self.price: dict[int, float] = {i.token: i.start_price for i in self.instruments}
        self.position: dict[tuple[str, int], int] = {}
        self.edge = {
            portfolio_id(src, s.strategy_id): rng.uniform(*EDGE_BPS) / 1e4 for src, s in self.books
        }
        self.recent: deque[Message] = deque(maxlen=2_000)
        self.ts = START_TS_MS
        self.fill_no = 0

    def tick(self) -> Message:
        inst = self.instruments[self.rng.randrange(len(self.instruments))]
        px = self.price[inst.token] * math.exp(self.rng.gauss(0.0, inst.sigma))
        self.price[inst.token] = px
        last = _on_grid(px, inst.tick_size)
        value = (
            f'{{"event_type":"market_tick","instrument_token":{inst.token},'
            f'"last_price":{last!r},"ts":{self.ts}}}'
        ).encode()
        return Message(TICKS_TOPIC, str(inst.token).encode(), value)

    def _fill_quantity(self, pos: int, inst: Instrument) -> int:
        """Signed quantity: open, add, reduce, close or flip the current position."""
        rng, lot = self.rng, inst.lot_size
        step = max(1, inst.max_lots // 4)
        lots = rng.randint(1, step) * lot
        if pos == 0:
            return lots if rng.random() < 0.5 else -lots
        sign = 1 if pos > 0 else -1
        action = rng.random()
        if action < 0.35 and abs(pos) + lots <= inst.max_lots * lot:
            return sign * lots  # add
        if action < 0.70 and abs(pos) > lot:
            return -sign * rng.randint(1, abs(pos) // lot - 1 or 1) * lot  # reduce
        if action < 0.85:
            return -pos  # close
        return -pos - sign * lots  # flip through zero

    def fill(self, valid: bool = True) -> Message:
        """A fill; an invalid one (base of a malformed record) changes no generator state."""
        source, strategy = self.books[self.rng.randrange(len(self.books))]
        token = strategy.tokens[self.rng.randrange(len(strategy.tokens))]
        inst = INSTRUMENT_BY_TOKEN[token]
        pid = portfolio_id(source, strategy.strategy_id)
        pos = self.position.get((pid, token), 0)
        qty = self._fill_quantity(pos, inst)
        if valid:
            self.position[(pid, token)] = pos + qty
            self.fill_no += 1
        sign = 1 if qty > 0 else -1
        slip = 1.0 - sign * self.edge[pid] + self.rng.gauss(0.0, NOISE_BPS / 1e4)
        price = _on_grid(self.price[token] * slip, inst.tick_size)
        fee = round(FLAT_FEE + FEE_RATE * abs(qty) * price * inst.multiplier, 2)
        record = {
            "event_type": "order_fill",
            "source": source,
            "fill_id": f"f-{self.fill_no:07d}" if valid else f"bad-{self.ts}",
            "ts": self.ts,
            "quantity": abs(qty),
            "fill_price": price,
            "fee": fee,
            "original_signal": {
                "strategy_id": strategy.strategy_id,
                "instrument_token": token,
                "signal_type": "BUY" if qty > 0 else "SELL",
            },
        }
        msg = Message(fills_topic(source), pid.encode(), _dumps(record))
        if valid:
            self.recent.append(msg)
        return msg

    def malformed(self) -> Message:
        kind = MALFORMED_KINDS[self.rng.randrange(len(MALFORMED_KINDS))]
        if kind == "truncated_json":
            good = self.fill(valid=False)
            return good._replace(value=good.value[: len(good.value) // 2])
        if kind == "not_json":
            return Message(TICKS_TOPIC, b"", b"\x00\x01not json at all")
        if kind == "bad_tick_price":
            token = self.instruments[0].token
            bad = {"event_type": "market_tick", "instrument_token": token, "last_price": -1.0}
            return Message(TICKS_TOPIC, str(token).encode(), _dumps({**bad, "ts": self.ts}))
        base = self.fill(valid=False)
        record = json.loads(base.value)
        if kind == "zero_quantity":
            record["quantity"] = 0
        elif kind == "negative_quantity":
            record["quantity"] = -abs(record["quantity"])
        elif kind == "bad_signal_type":
            record["original_signal"]["signal_type"] = "HOLD"
        else:  # missing_token
            del record["original_signal"]["instrument_token"]
        return base._replace(value=_dumps(record))


def generate_messages(
    seed: int = 7,
    n_events: int = 200_000,
    *,
    fill_rate: float = 0.05,
    duplicate_rate: float = 0.002,
    malformed_rate: float = 0.001,
    n_strategies: int | None = None,
    stats: FeedStats | None = None,
) -> Iterator[Message]:
    """Yield ``n_events`` Kafka messages ``(topic, key, value)`` of the demo feed."""
    rng = random.Random(seed)
    state = _FeedState(rng, n_strategies)
    stats = stats if stats is not None else FeedStats()
    for _ in range(n_events):
        state.ts += rng.randint(1, 20)
        r = rng.random()
        if r < malformed_rate:
            stats.malformed += 1
            msg = state.malformed()
        elif r < malformed_rate + duplicate_rate and state.recent:
            stats.duplicates += 1
            msg = state.recent[rng.randrange(len(state.recent))]
        elif r < malformed_rate + duplicate_rate + fill_rate:
            stats.fills += 1
            msg = state.fill()
        else:
            stats.ticks += 1
            msg = state.tick()
        stats.events += 1
        yield msg


def generate_batches(
    seed: int = 7,
    n_events: int = 200_000,
    batch_size: int = 10_000,
    *,
    fill_rate: float = 0.05,
    duplicate_rate: float = 0.002,
    malformed_rate: float = 0.001,
    n_strategies: int | None = None,
    stats: FeedStats | None = None,
) -> Iterator[list[bytes]]:
    """Yield the feed's raw JSON values in micro-batches of at most ``batch_size``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    messages = generate_messages(
        seed,
        n_events,
        fill_rate=fill_rate,
        duplicate_rate=duplicate_rate,
        malformed_rate=malformed_rate,
        n_strategies=n_strategies,
        stats=stats,
    )
    batch: list[bytes] = []
    for msg in messages:
        batch.append(msg.value)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
