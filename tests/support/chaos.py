"""Fault-injection harness shared by ``tests/faults`` and ``bench/chaos.py``.

* :func:`build_stream`: the demo feed (fills, ticks, byte-identical duplicates, malformed
  records) with the :mod:`support.poison` catalogue and long-range redeliveries of old fills
  mixed in. Every record is *labelled by construction* (``fill``, ``duplicate``, ``tick``,
  ``odd``: valid; ``malformed``, ``poison``: must be dead-lettered), independently of the
  package's decoder; the labels are cross-checked against the generator's own counts.
* :func:`produce_items` records the partition and offset the broker gave every record, so
  dead letters (whose headers name topic/partition/offset) can be matched one to one.
* The reference is a ``PortfolioEngine`` applied in-process to the *valid* records in
  produce order. :func:`frozen_problems` compares Redis, while no daemon runs, with the
  reference of "exactly what the stored offsets say was consumed": the records of every
  fill partition below its stored ``next_offset`` plus the ticks below the stored tick
  offsets. Passing right after a kill -9 proves state and offsets were written atomically.
* :func:`kill_chaos`: produce in chunks, kill -9 the daemon at random points, check the
  frozen state against its offsets, restart, catch up, check against the full reference;
  returns :class:`KillFigures`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from redis.cluster import RedisCluster

from pm_polars import PortfolioEngine
from pm_polars.demo.feed import FeedStats, generate_messages
from pm_polars.publish.keys import Keys
from pm_polars.types import TP

from .daemon import DaemonProcess, wait_for
from .names import STARTING_CASH, Names
from .poison import Poison, accepted_oddities, catalogue
from .published import differences

# Short sessions: a kill -9 is noticed in ~2-3 s instead of ~25 s (tansu accepts < 6 s).
FAST_KAFKA: tuple[str, ...] = (
    "session.timeout.ms=1500",
    "heartbeat.interval.ms=150",
    "topic.metadata.refresh.interval.ms=500",
)
# filler: a tombstone standing in for records a broker lost (may or may not be dead-lettered)
Label = Literal["fill", "duplicate", "tick", "odd", "malformed", "poison", "filler"]
VALID: frozenset[str] = frozenset({"fill", "duplicate", "tick", "odd"})
DEAD: frozenset[str] = frozenset({"malformed", "poison"})


# ---------------------------------------------------------------------------- stream
@dataclass
class Item:
    """One record of a stream, its label, and where the broker put it."""

    topic: str
    key: bytes | None
    value: bytes | None
    label: Label
    expect: str = ""  # poison: text the dead-letter reason must contain
    name: str = ""  # poison: catalogue name
    partition: int = -1
    offset: int = -1

    @property
    def valid(self) -> bool:
        return self.label in VALID


@dataclass
class Stream:
    items: list[Item]

    def counts(self) -> Counter[str]:
        return Counter(i.label for i in self.items)

    @property
    def duplicates(self) -> int:
        return sum(1 for i in self.items if i.label == "duplicate")

    @property
    def dead(self) -> int:
        return sum(1 for i in self.items if i.label in DEAD)


FRACTION_ATOMS = 12_345  # a fractional stream's quantity q is q x 12,345 atoms of 10^-8


def _fractional(value: bytes) -> bytes:
    """A demo-feed fill's positive integer quantity ``q`` as ``q x 0.00012345`` units (8
    decimal places, exactly as a JSON number); every other record as it is."""
    try:
        obj = json.loads(value)
    except ValueError:
        return value
    if not isinstance(obj, dict) or obj.get("event_type") != "order_fill":
        return value
    q = obj.get("quantity")
    if type(q) is not int or q <= 0:
        return value
    obj["quantity"] = float(Decimal(q * FRACTION_ATOMS).scaleb(-8))
    return json.dumps(obj).encode()


def _feed_label(value: bytes, seen: set[tuple[str, str]], fractional: bool = False) -> Label:
    """Label a demo-feed record from the wire rules (not with the package's decoder);
    ``fractional``: a float quantity is valid (the stream's are of 8 places, see
    :func:`_fractional`)."""
    try:
        obj = json.loads(value)
    except ValueError:
        return "malformed"
    if not isinstance(obj, dict):
        return "malformed"
    if obj.get("event_type") == "market_tick":
        price = obj.get("last_price")
        if not isinstance(obj.get("instrument_token"), int) or \
                not isinstance(price, float | int):
            return "malformed"
        return "tick" if price > 0 else "malformed"
    signal_ = obj.get("original_signal") or {}
    qty = obj.get("quantity")
    if not (isinstance(qty, int | float) and not isinstance(qty, bool)
            and (fractional or isinstance(qty, int))
            and qty > 0 and signal_.get("signal_type") in ("BUY", "SELL")
            and isinstance(signal_.get("instrument_token"), int)
            and obj.get("fill_price", 0) > 0):
        return "malformed"
    key = (obj["source"], obj["fill_id"])
    if key in seen:
        return "duplicate"
    seen.add(key)
    return "fill"


def build_stream(
    names: Names, n_events: int, *, seed: int = 7, fill_rate: float = 0.3,
    duplicate_rate: float = 0.01, malformed_rate: float = 0.003, poison_rate: float = 0.002,
    redeliver_rate: float = 0.002, large: bool = False, oddities: bool = True,
    poisons: Sequence[Poison] | None = None, fractional: bool = False,
) -> Stream:
    """``n_events`` feed records plus poison, redeliveries and odd-but-valid records.

    ``fractional`` (for ``names.quantity_decimals`` 8): every fill's quantity becomes a
    fraction of 8 decimal places (:func:`_fractional`), and the poison that is a fraction
    (valid then) is left out.

    Poison records are inserted after a feed record with probability ``poison_rate`` (the
    catalogue is cycled, each on a random fill topic or the ticks topic as its kind says);
    a redelivery (a byte-identical copy of *any* earlier valid fill, so possibly one applied
    before a restart) with probability ``redeliver_rate``.
    """
    rng = random.Random(seed * 7919 + 1)
    stats = FeedStats()
    seen: set[tuple[str, str]] = set()
    cat = list(poisons) if poisons is not None else catalogue(large=large)
    if fractional:
        cat = [p for p in cat if p.name != "quantity_fraction"]
    items: list[Item] = []
    fills_so_far: list[Item] = []
    labels: Counter[str] = Counter()
    next_poison = 0
    last_ts = 1_795_600_000_000
    odd_at = min(n_events // 3, 500) if oddities else -1
    for i, msg in enumerate(generate_messages(seed, n_events, fill_rate=fill_rate,
                                              duplicate_rate=duplicate_rate,
                                              malformed_rate=malformed_rate, stats=stats)):
        value = _fractional(msg.value) if fractional else msg.value
        label = _feed_label(value, seen, fractional)
        labels[label] += 1
        item = Item(names.topic(msg.topic), msg.key, value, label)
        items.append(item)
        if label == "fill":
            fills_so_far.append(item)
        if label in VALID:
            last_ts = int(json.loads(value)["ts"])
        if i == odd_at:  # one portfolio of its own: its fills stay on one partition
            for _kind, key, value in accepted_oddities(last_ts):
                items.append(Item(names.fills("paper"), key, value, "odd"))
        if cat and rng.random() < poison_rate:
            p = cat[next_poison % len(cat)]
            next_poison += 1
            items.append(Item(_topic_of(names, p.kind, rng), p.key, p.value, "poison",
                              expect=p.expect, name=p.name))
        if fills_so_far and rng.random() < redeliver_rate:
            old = fills_so_far[rng.randrange(len(fills_so_far))]
            items.append(Item(old.topic, old.key, old.value, "duplicate"))
    # the labelling is independent of the decoder: it must agree with the generator
    assert labels["malformed"] == stats.malformed, (labels, stats)
    assert labels["duplicate"] == stats.duplicates, (labels, stats)
    assert labels["fill"] == stats.fills and labels["tick"] == stats.ticks, (labels, stats)
    return Stream(items)


def _topic_of(names: Names, kind: str, rng: random.Random) -> str:
    if kind == "ticks":
        return names.ticks
    return names.fills(rng.choice(("paper", "live")))


def poison_items(names: Names, poisons: Iterable[Poison], rng: random.Random) -> list[Item]:
    return [Item(_topic_of(names, p.kind, rng), p.key, p.value, "poison", expect=p.expect,
                 name=p.name) for p in poisons]


# ---------------------------------------------------------------------------- produce
def _producer(bootstrap: str, extra: dict[str, Any] | None = None) -> Producer:
    """Idempotent (a retried request never writes a record twice, so every item is exactly
    one record), patient (tansu under load has stalled produce requests for 60 s), and
    allowed 8 MiB records. Create a new one after a broker restart (an idempotent producer
    does not survive one on tansu)."""
    return Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
        "message.max.bytes": 8 << 20, "message.timeout.ms": 600_000,
        "queue.buffering.max.messages": 500_000, **(extra or {}),
    })


def _where(msg: Message) -> tuple[int, int]:
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None
    return partition, offset


def fillers(names: Names, fills: dict[TP, int], ticks: dict[int, int]) -> list[Item]:
    """Tombstones pinned to each partition, as many as its stored offset (see the broker
    restart test: a memory broker restarts empty and would reuse offsets already consumed)."""
    out = [Item(t, None, None, "filler", partition=p) for (t, p), n in fills.items()
           for _ in range(n)]
    out += [Item(names.ticks, None, None, "filler", partition=p) for p, n in ticks.items()
            for _ in range(n)]
    return out


def produce_items(bootstrap: str, items: Sequence[Item], timeout: float = 600.0) -> None:
    """Produce ``items`` in order; fills in each item's partition and offset."""
    producer = _producer(bootstrap)
    errors: list[str] = []

    def report(item: Item) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"{item.label} {item.name}: {err}")
            else:
                item.partition, item.offset = _where(msg)
        return on_delivery

    for item in items:
        pinned: dict[str, Any] = {"partition": item.partition} if item.label == "filler" \
            else {}
        while True:
            try:
                producer.produce(item.topic, key=item.key, value=item.value,
                                 on_delivery=report(item), **pinned)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(timeout)
    if left or errors:
        raise RuntimeError(f"produce: {left} undelivered, errors {errors[:3]}")


MAX_BEHIND_S = 0.5


class PacedProducer(threading.Thread):
    """Produces ``items`` at ``rate`` records/s in a thread. If it falls more than
    ``MAX_BEHIND_S`` behind (a loaded machine), it slips instead of bursting to catch up."""

    def __init__(self, bootstrap: str, items: Sequence[Item], rate: float) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.items, self.rate = items, rate
        self.producer = _producer(bootstrap)
        self.acked = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.finished = threading.Event()

    def _report(self, item: Item) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                item.partition, item.offset = _where(msg)
                self.acked += 1
        return on_delivery

    def run(self) -> None:
        start = time.monotonic()
        for i, item in enumerate(self.items):
            if self.stop_event.is_set():
                break
            delay = start + i / self.rate - time.monotonic()
            if delay > 0:
                self.producer.poll(delay)
            elif delay < -MAX_BEHIND_S:  # starved of CPU: keep the rate, no catch-up burst
                start -= delay + MAX_BEHIND_S
            while True:
                try:
                    self.producer.produce(item.topic, key=item.key, value=item.value,
                                          on_delivery=self._report(item))
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        self.producer.flush(600)
        self.finished.set()


# ---------------------------------------------------------------------------- reference
def reference(items: Iterable[Item], cost_basis: str = "average",
              quantity_decimals: int = 0) -> PortfolioEngine:
    """The engine applied once to the valid records, in produce order."""
    eng = PortfolioEngine(starting_cash=STARTING_CASH, cost_basis=cost_basis,
                          quantity_decimals=quantity_decimals)
    values = [i.value for i in items if i.valid]
    if values:
        eng.apply(values)
    return eng


def ends(items: Iterable[Item], names: Names) -> tuple[dict[TP, int], dict[int, int]]:
    """Log end offsets per partition (fills, ticks) of the produced items."""
    fills: dict[TP, int] = {}
    ticks: dict[int, int] = {}
    for i in items:
        if i.offset < 0:
            raise AssertionError(f"item not delivered: {i.label} {i.name}")
        if i.topic == names.ticks:
            ticks[i.partition] = max(ticks.get(i.partition, 0), i.offset + 1)
        else:
            tp = (i.topic, i.partition)
            fills[tp] = max(fills.get(tp, 0), i.offset + 1)
    return fills, ticks


# ---------------------------------------------------------------------------- redis side
def _keys(client: redis.Redis) -> Keys:
    """The daemon's key layout for this client (hash-tagged on a Redis Cluster)."""
    return Keys(cluster=isinstance(client, RedisCluster))


def stored(client: redis.Redis, names: Names) -> tuple[dict[TP, int], dict[int, int]]:
    """Offsets stored in Redis: fill partitions' ``next_offset`` and the tick offsets."""
    fills: dict[TP, int] = {}
    keys = _keys(client)
    prefix, end = keys.partition_state(names.group, "\0", 0, "meta").split("\0:0")
    for key in client.scan_iter(f"{prefix}*{end}", count=1000):
        topic, _, part = str(key)[len(prefix):-len(end)].rpartition(":")
        value = client.hget(key, "next_offset")
        if value is not None:
            fills[(topic, int(part))] = int(value)
    raw = client.hgetall(keys.tick_offsets(names.ticks))
    ticks = {int(p): int(o) for p, o in raw.items()}
    return fills, ticks


def progress(client: redis.Redis, names: Names) -> int:
    fills, ticks = stored(client, names)
    return sum(fills.values()) + sum(ticks.values())


def seen_count(client: redis.Redis, names: Names) -> int:
    """Fill ids recorded as applied (all partitions' ``seen`` sets)."""
    prefix, end = _keys(client).partition_state(names.group, "\0", 0, "seen").split("\0:0")
    return sum(int(client.zcard(k)) for k in client.scan_iter(f"{prefix}*{end}", count=1000))


def state_problems(client: redis.Redis, ref: PortfolioEngine, names: Names,
                   unique_fills: int | None = None) -> list[str]:
    """Redis vs ``ref`` (documents, Overall, aum) plus the number of applied fill ids."""
    problems = differences(client, ref)
    if unique_fills is not None:
        got = seen_count(client, names)
        if got != unique_fills:
            problems.append(f"seen fill ids {got} != unique valid fills {unique_fills}")
    return problems


def latest_ticks(items: Iterable[Item]) -> dict[int, tuple[float, int]]:
    """``token -> (price, ts ns)`` of the latest valid tick (by ts; ties: later arrival)."""
    out: dict[int, tuple[float, int]] = {}
    for i in items:
        if i.label != "tick" or i.value is None:
            continue
        obj = json.loads(i.value)
        token, ts_ns = int(obj["instrument_token"]), int(obj["ts"]) * 1_000_000
        if token not in out or ts_ns >= out[token][1]:
            out[token] = (float(obj["last_price"]), ts_ns)
    return out


def price_problems(client: redis.Redis, items: Iterable[Item]) -> list[str]:
    """The ``prices`` hash vs the latest tick per instrument among ``items``."""
    want = latest_ticks(items)
    raw = client.hgetall("prices")
    got = {int(k): json.loads(v) for k, v in raw.items()}
    problems = []
    for token in sorted(set(want) | set(got)):
        w, g = want.get(token), got.get(token)
        if w is None or g is None or (float(g["last_price"]), int(g["ts"])) != w:
            problems.append(f"prices[{token}]: redis {g} != latest tick {w}")
    return problems


def frozen_problems(client: redis.Redis, items: Sequence[Item], names: Names) -> list[str]:
    """With no daemon running: is Redis exactly what its stored offsets claim was consumed?

    Positions, quantities, cash, realized P&L and fees of every strategy and Overall
    document, the applied fill ids and the ``prices`` hash must equal the reference of the
    consumed records. Mark-dependent fields are not compared here: ticks read before an
    instance owns a portfolio's partition advance ``prices`` without republishing that
    portfolio (its next owner does on assignment), so they are checked after catch-up.
    """
    fills, ticks = stored(client, names)

    def consumed(i: Item) -> bool:
        if i.offset < 0:
            return False
        if i.topic == names.ticks:
            return i.offset < ticks.get(i.partition, 0)
        return i.offset < fills.get((i.topic, i.partition), 0)

    done = [i for i in items if consumed(i)]
    ref = reference(done, names.cost_basis, names.quantity_decimals)
    problems = differences(client, ref, with_marks=False) if ref.portfolio_ids() else []
    n = unique_fills(done)
    got = seen_count(client, names)
    if got != n:
        problems.append(f"seen fill ids {got} != unique valid fills consumed {n}")
    return problems + price_problems(client, done)


def unique_fills(items: Iterable[Item]) -> int:
    return sum(1 for i in items if i.label in ("fill", "odd"))


def wait_caught_up(client: redis.Redis, names: Names, items: Sequence[Item], *,
                   timeout: float = 120.0, diagnose: Callable[[], str] | None = None,
                   alive: Callable[[], bool] | None = None) -> None:
    """Until the stored offsets are the log end of every partition that got records.

    ``alive``: fail at once (instead of at the timeout) when it returns False.
    """
    want_f, want_t = ends(items, names)

    def done() -> bool:
        got_f, got_t = stored(client, names)
        return all(got_f.get(tp) == o for tp, o in want_f.items()) and \
            all(got_t.get(p) == o for p, o in want_t.items())

    wait_for("offsets at the log end", lambda: done() or (alive is not None and not alive()),
             timeout=timeout, interval=0.05, diagnose=diagnose)
    if not done():
        raise AssertionError("the daemon died before catching up\n"
                             + (diagnose() if diagnose else ""))


def check_equal(client: redis.Redis, names: Names, items: Sequence[Item],
                ref: PortfolioEngine | None = None, *, timeout: float = 10.0,
                diagnose: Callable[[], str] | None = None,
                seen: bool = True) -> PortfolioEngine:
    """After catch-up: Redis equals the reference (a short grace for the republish batch).

    ``seen=False``: do not count the stored fill ids (a short ``--dedupe-retention`` prunes
    them).
    """
    ref = ref if ref is not None else reference(items, names.cost_basis,
                                                 names.quantity_decimals)
    n = unique_fills(items) if seen else None

    def problems() -> list[str]:
        return state_problems(client, ref, names, n) + price_problems(client, items)

    wait_for("Redis to equal the reference", lambda: not problems(), timeout=timeout,
             diagnose=lambda: "\n".join(problems()[:15])
             + ("\n" + diagnose() if diagnose else ""))
    return ref


# ---------------------------------------------------------------------------- dead letters
@dataclass
class DlqCheck:
    problems: list[str]
    unique: int  # distinct source records dead-lettered
    total: int  # dead letters read (> unique when a batch was dead-lettered twice after a crash)
    reasons: dict[str, str] = field(default_factory=dict)  # poison name -> reason seen
    copies: Counter[tuple[str, int, int]] = field(default_factory=Counter)  # per record


def headers_of(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    raw: Any = msg.headers() or []
    for k, v in raw:
        out[str(k)] = v.decode() if isinstance(v, bytes) else str(v or "")
    return out


def _value_problem(value: bytes | None, headers: dict[str, str],
                   original: bytes | None) -> str:
    """A dead letter carries the record's bytes; a large one (header ``truncated``: the
    original size) a prefix of them, with the whole original's ``sha256``."""
    if "truncated" not in headers:
        return "" if value == original else "value differs from the record"
    whole = original or b""
    if int(headers["truncated"]) != len(whole):
        return f"truncated header {headers['truncated']} != size {len(whole)}"
    if not value or not whole.startswith(value) or len(value) >= len(whole):
        return "truncated value is not a proper prefix of the record"
    if headers.get("sha256") != hashlib.sha256(whole).hexdigest():
        return "sha256 header is not the record's"
    return ""


def read_dead_letters(bootstrap: str, names: Names, items: Sequence[Item], *,
                      timeout: float = 30.0, settle: float = 0.5) -> DlqCheck:
    """Read the DLQ until every expected dead letter is there, then check them one by one.

    Every ``malformed``/``poison`` item must appear (value byte-identical -- or, for a large
    one, a prefix with its size and sha256 in headers --, headers pointing at its
    topic/partition/offset, reason non-empty and containing ``expect``); nothing else may. Copies of the same record are allowed (at-least-once after a crash) and counted.
    """
    want = {(i.topic, i.partition, i.offset): i for i in items if i.label in DEAD}
    fillers = {(i.topic, i.partition, i.offset) for i in items if i.label == "filler"}
    got: Counter[tuple[str, int, int]] = Counter()
    problems: list[str] = []
    reasons: dict[str, str] = {}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{names.uid}-dlq-reader",
                         "enable.auto.commit": False, "fetch.message.max.bytes": 16 << 20})
    try:
        deadline = time.monotonic() + timeout
        parts: list[int] = []
        while time.monotonic() < deadline and not parts:
            meta = consumer.list_topics(names.dlq, timeout=5).topics.get(names.dlq)
            if meta is not None and meta.error is None:
                parts = sorted(meta.partitions)
            elif not want:
                return DlqCheck([], 0, 0)
            else:
                time.sleep(0.1)
        consumer.assign([TopicPartition(names.dlq, p, OFFSET_BEGINNING) for p in parts])
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=1000, timeout=0.1)
            for m in msgs:
                if m.error() is not None:
                    continue
                h = headers_of(m)
                key = (h.get("topic", ""), int(h.get("partition") or -1),
                       int(h.get("offset") or -1))
                if key in fillers:
                    continue
                got[key] += 1
                item = want.get(key)
                if item is None:
                    problems.append(f"unexpected dead letter {key} reason={h.get('reason')!r}")
                    continue
                problem = _value_problem(m.value(), h, item.value)
                if m.key() != "/".join(map(str, key)).encode():
                    problem = problem or f"key {m.key()!r} is not topic/partition/offset"
                if problem:
                    problems.append(f"{key} ({item.name or item.label}): {problem}")
                reason = h.get("reason", "")
                if not reason or (item.expect and not any(
                        e in reason for e in item.expect.split("|"))):
                    problems.append(f"{key} {item.name}: reason {reason[:200]!r} lacks "
                                    f"{item.expect!r}")
                if item.name:
                    reasons[item.name] = reason
            if set(want) <= set(got):
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    break
        missing = set(want) - set(got)
        for key in sorted(missing)[:20]:
            problems.append(f"missing dead letter {key} ({want[key].name or want[key].label})")
        if missing:
            problems.append(f"{len(missing)} of {len(want)} dead letters missing")
    finally:
        consumer.close()
    return DlqCheck(problems, len(set(got) & set(want)), sum(got.values()), reasons, got)


# ---------------------------------------------------------------------------- processes
def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as ``{"name{labels}": value}`` (sample lines only)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def owned(daemon: DaemonProcess) -> set[str]:
    """Partitions the daemon owns according to its assigned/revoked/lost log lines."""
    parts: set[str] = set()
    for kind, listed in re.findall(r"event=(assigned|revoked|lost) partitions=(\S+)",
                                   daemon.log()):
        names = set() if listed == "-" else set(listed.split(","))
        parts = parts | names if kind == "assigned" else parts - names
    return parts


class Daemons:
    """Starts daemons of one scenario and kills them all at the end."""

    def __init__(self, bootstrap: str, redis_url: str, names: Names, workdir: Path,
                 kafka: Sequence[str] = FAST_KAFKA) -> None:
        self.bootstrap, self.redis_url, self.names = bootstrap, redis_url, names
        self.workdir, self.kafka = workdir, tuple(kafka)
        self.started: list[DaemonProcess] = []

    def start(self, *extra: str) -> DaemonProcess:
        log_path = self.workdir / f"{self.names.uid}-daemon-{len(self.started)}.log"
        proc = DaemonProcess(self.bootstrap, self.redis_url, log_path,
                             args=self.names.daemon_args(*extra), kafka=self.kafka)
        self.started.append(proc)
        return proc

    def tail(self, n: int = 2500) -> str:
        return "\n".join(f"--- {d.log_path.name} (alive={d.alive()})\n{d.log()[-n:]}"
                         for d in self.started[-3:])

    def kill_all(self) -> None:
        for d in self.started:
            d.kill()


# ---------------------------------------------------------------------------- kill -9 chaos
@dataclass
class KillRecord:
    mode: str  # "progress": at a random share of a chunk; "arrival": as a chunk starts
    # arriving; "early": 0.2-2.5 s after spawn (start-up, join, load, first batches)
    at_progress: int  # records committed when killed
    produced: int  # records produced by then
    batch_events: int

    @property
    def mid_stream(self) -> bool:
        return self.at_progress < self.produced


@dataclass
class KillFigures:
    kills: list[KillRecord]
    events: int
    duplicates: int
    dead_letters_unique: int
    dead_letters_total: int
    checks: int  # state comparisons that passed (after each kill and each restart)
    seconds: float

    def lines(self) -> list[str]:
        mid = sum(k.mid_stream for k in self.kills)
        return [
            f"kills survived            {len(self.kills)} ({mid} mid-stream, "
            f"{sum(k.mode == 'early' for k in self.kills)} soon after spawn, "
            f"{sum(k.mode == 'arrival' for k in self.kills)} as a chunk arrived)",
            f"events checked            {self.events:,}",
            f"duplicates rejected       {self.duplicates:,} (each fill id applied once)",
            f"poison dead-lettered      {self.dead_letters_unique:,} records "
            f"({self.dead_letters_total:,} dead letters: at-least-once across kills)",
            f"state checks passed       {self.checks} (frozen state after each kill + "
            "caught-up state after each restart)",
            f"elapsed                   {self.seconds:.1f} s",
        ]


def _reached(client: redis.Redis, names: Names, target: int,
             daemon: DaemonProcess) -> Callable[[], bool]:
    return lambda: progress(client, names) >= target or not daemon.alive()


def kill_chaos(
    bootstrap: str, client: redis.Redis, redis_url: str, names: Names, stream: Stream,
    workdir: Path, *, kills: int, seed: int = 1, early_share: float = 0.25,
    batch_choices: Sequence[int] = (50, 200, 1000, 5000), catch_up_timeout: float = 180.0,
    say: Callable[[str], None] = lambda _s: None,
) -> KillFigures:
    """Kill -9 the daemon ``kills`` times over ``stream`` (see the module docstring).

    The stream is produced in ``kills + 1`` chunks while a daemon runs. For each chunk, until
    ``kills`` are spent: one kill at a random point (``progress``: once a random 5-90 % of the
    chunk is committed, plus 0-30 ms), or, with probability ``early_share``, two (``arrival``:
    0-50 ms after the chunk was produced; ``early``: the restart is killed again 0.2-2.5 s
    after spawn, i.e. during start-up, group join, partition load or its first batches).
    Each restart gets a random ``--max-events`` and ``--max-wait-ms``. After every
    kill the frozen Redis state must be what its stored offsets claim
    (:func:`frozen_problems`); after every restart the caught-up state must equal the full
    reference, ``prices`` and the number of applied fill ids included.
    """
    rng = random.Random(seed)
    t0 = time.monotonic()
    daemons = Daemons(bootstrap, redis_url, names, workdir)
    items = stream.items
    n_chunks = kills + 1
    cuts = sorted(rng.sample(range(1, len(items)), n_chunks - 1)) if n_chunks > 1 else []
    bounds = [0, *cuts, len(items)]
    records: list[KillRecord] = []
    checks = 0
    current: DaemonProcess | None = None
    batch = 0

    def spawn() -> DaemonProcess:
        nonlocal batch
        batch = rng.choice(list(batch_choices))
        return daemons.start("--max-events", str(batch), "--max-wait-ms",
                             str(rng.choice((2, 5, 20))))

    def kill(d: DaemonProcess, mode: str, produced: int) -> None:
        nonlocal checks
        if not d.alive():
            raise AssertionError(f"the daemon exited by itself (code {d.proc.returncode}) "
                                 f"before kill #{len(records) + 1}\n{daemons.tail()}")
        d.proc.send_signal(signal.SIGKILL)
        d.wait(10)
        at = progress(client, names)
        records.append(KillRecord(mode, at, produced, batch))
        problems = frozen_problems(client, items[:produced], names)
        if problems:
            raise AssertionError(f"state after kill #{len(records)} ({mode}) is not the "
                                 f"prefix its offsets claim:\n" + "\n".join(problems[:15])
                                 + "\n" + daemons.tail())
        checks += 1
        say(f"kill #{len(records)} ({mode}, batch {batch}): committed {at:,} of "
            f"{produced:,} produced; frozen state = what its offsets claim")

    try:
        budget = kills
        for c in range(n_chunks):
            chunk = items[bounds[c]:bounds[c + 1]]
            produce_items(bootstrap, chunk)
            produced = bounds[c + 1]
            if current is None:
                current = spawn()
            if budget > 0:
                base = progress(client, names)
                if budget >= 2 and c > 0 and rng.random() < early_share:
                    # kill as the chunk starts arriving, then kill the restart during start-up
                    time.sleep(rng.uniform(0.0, 0.05))
                    kill(current, "arrival", produced)
                    current = spawn()
                    time.sleep(rng.uniform(0.2, 2.5))
                    kill(current, "early", produced)
                    budget -= 2
                else:
                    target = base + int(rng.uniform(0.05, 0.9) * (produced - bounds[c]))
                    wait_for("progress to the kill point",
                             _reached(client, names, target, current),
                             timeout=catch_up_timeout, interval=0.005,
                             diagnose=daemons.tail)
                    time.sleep(rng.uniform(0.0, 0.03))
                    kill(current, "progress", produced)
                    budget -= 1
                current = spawn()
            done = items[:produced]
            wait_caught_up(client, names, done, timeout=catch_up_timeout,
                           diagnose=daemons.tail, alive=current.alive)
            check_equal(client, names, done, diagnose=daemons.tail)
            checks += 1
            say(f"chunk {c + 1}/{n_chunks}: {produced:,} records, caught up, state = reference")
        assert current is not None and current.alive(), daemons.tail()
        dlq = read_dead_letters(bootstrap, names, items)
        if dlq.problems:
            raise AssertionError("dead letters:\n" + "\n".join(dlq.problems[:20]))
        code = current.terminate()
        if code != 0:
            raise AssertionError(f"final daemon exited {code}\n{daemons.tail()}")
    finally:
        daemons.kill_all()
    return KillFigures(records, len(items), stream.duplicates, dlq.unique, dlq.total, checks,
                       time.monotonic() - t0)


# ---------------------------------------------------------------------------- soak
@dataclass
class SoakFigures:
    events: int
    seconds: float  # production time at the steady rate
    rate: float
    rss_start_mb: float  # after the first committed batch
    rss_end_mb: float  # after catch-up
    rss_max_mb: float
    max_lag: int  # records acknowledged by the broker but not yet committed to Redis
    max_lag_metric: float  # max of the daemon's own pm_consumer_lag_records (fills, summed)
    samples: int

    def lines(self) -> list[str]:
        return [
            f"soak                      {self.events:,} events in {self.seconds:.0f} s "
            f"({self.events / self.seconds:,.0f}/s achieved, {self.rate:,.0f}/s target)",
            f"soak RSS start/end        {self.rss_start_mb:.1f} MiB -> {self.rss_end_mb:.1f} MiB"
            f" (max {self.rss_max_mb:.1f} MiB, {self.samples} samples)",
            f"soak max lag              {self.max_lag:,} records produced but not committed "
            f"(daemon's own fill-lag gauge max {self.max_lag_metric:,.0f})",
        ]


def soak(
    bootstrap: str, client: redis.Redis, redis_url: str, names: Names, stream: Stream,
    workdir: Path, *, rate: float, port: int, sample_every: float = 0.5,
    daemon_args: Sequence[str] = (), seen: bool = True,
    say: Callable[[str], None] = lambda _s: None,
) -> SoakFigures:
    """One daemon under ``stream`` produced at a steady ``rate``; RSS and lag sampled.

    Ends with the state equal to the reference and the dead letters complete.
    """
    daemons = Daemons(bootstrap, redis_url, names, workdir)
    items = stream.items
    try:
        daemon = daemons.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                               *daemon_args)
        producer = PacedProducer(bootstrap, items, rate)
        producer.start()
        t0 = time.monotonic()
        wait_for("first batch", lambda: progress(client, names) > 0, timeout=60,
                 diagnose=daemons.tail)
        rss: list[float] = [rss_mb(daemon.pid)]
        max_lag, max_metric, next_say = 0, 0.0, t0 + 10
        while not producer.finished.is_set():
            time.sleep(sample_every)
            acked = producer.acked
            max_lag = max(max_lag, acked - progress(client, names))
            rss.append(rss_mb(daemon.pid))
            try:
                m = scrape(port)
            except OSError:
                m = {}
            max_metric = max(max_metric, sum(v for k, v in m.items()
                                             if k.startswith("pm_consumer_lag_records")))
            if time.monotonic() >= next_say:
                next_say += 10
                say(f"soak {time.monotonic() - t0:5.0f} s: {acked:,} produced, lag "
                    f"{acked - progress(client, names):,}, RSS {rss[-1]:.1f} MiB")
            if not daemon.alive():
                raise AssertionError("daemon died during the soak\n" + daemons.tail())
        produced_s = time.monotonic() - t0
        if producer.errors:
            raise AssertionError(f"produce errors {producer.errors[:3]}")
        wait_caught_up(client, names, items, timeout=300, diagnose=daemons.tail,
                       alive=daemon.alive)
        check_equal(client, names, items, diagnose=daemons.tail, seen=seen)
        rss.append(rss_mb(daemon.pid))
        dlq = read_dead_letters(bootstrap, names, items)
        if dlq.problems:
            raise AssertionError("dead letters:\n" + "\n".join(dlq.problems[:20]))
        code = daemon.terminate()
        if code != 0:
            raise AssertionError(f"daemon exited {code}\n{daemons.tail()}")
    finally:
        daemons.kill_all()
    return SoakFigures(len(items), produced_s, rate, rss[0], rss[-1], max(rss), max_lag,
                       max_metric, len(rss))


__all__ = [
    "DEAD", "Daemons", "DlqCheck", "FAST_KAFKA", "Item", "KillFigures", "KillRecord", "Names",
    "PacedProducer", "STARTING_CASH", "SoakFigures", "Stream", "VALID", "build_stream",
    "check_equal", "ends", "fillers", "frozen_problems", "headers_of", "kill_chaos", "owned",
    "poison_items", "price_problems", "produce_items", "progress", "read_dead_letters",
    "reference", "rss_mb", "scrape", "seen_count", "soak", "state_problems", "stored",
    "unique_fills", "wait_caught_up",
]
