"""Settings of ``pm-polars run``: one table of specs, four sources, one precedence.

Precedence: command-line flag > environment variable (``PM_<NAME>``) > TOML file
(``--config FILE``; top-level keys are the setting names, librdkafka properties go in a
``[kafka]`` table) > default. librdkafka properties are merged per key in the same order
(``-X key=value`` flags, ``PM_KAFKA_PROPERTIES="k=v;k=v"``, the ``[kafka]`` table).

Units: ``*_ms`` milliseconds; durations (``dedupe_retention``, ``health_timeout``) are
seconds and also accept ``90s``, ``15m``, ``24h``, ``7d``. Secrets (``redis_password`` and librdkafka properties
containing ``password``, ``secret`` or ``key.pem``) are never logged; see :func:`redacted`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pm_polars.daemon.alerts import AlertRules
from pm_polars.engine import tradingday
from pm_polars.engine.config import (
    COST_BASES,
    MARKS,
    MAX_QUANTITY_DECIMALS,
    EngineConfig,
    is_currency,
)
from pm_polars.engine.instruments import InstrumentError, load_instruments


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting and the fix."""


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(text: str) -> float:
    """``"86400"``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use seconds or a suffix s/m/h/d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def boolean(text: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case)."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _optional_path(text: str) -> Path | None:
    return Path(text) if str(text).strip() else None


@dataclass(frozen=True)
class Spec:
    """One setting: its name (TOML key), flag, parser from text, default and help."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = ""
    secret: bool = False
    choices: tuple[str, ...] = ()
    shown: str = ""  # default as shown in --help (when repr is not the clearest)
    switch: bool = False  # a flag without a value (boolean settings)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "PM_" + self.name.upper()


SPECS: tuple[Spec, ...] = (
    Spec("bootstrap_servers", str, None, "Kafka/Redpanda bootstrap servers (required)",
         "HOST:PORT[,...]"),
    Spec("redis_url", str, "redis://localhost:6379/0",
         "Redis URL; rediss:// for TLS, redis://user:pass@host/db for AUTH", "URL"),
    Spec("redis_cluster", boolean, False, "--redis-url names any one node of a Redis "
         "Cluster (hash-tagged keys, one transaction per partition; published names "
         "unchanged); env/TOML: true or false", switch=True),
    Spec("redis_password", str, None,
         "Redis AUTH password (prefer the env var: flags show up in ps)", "SECRET", secret=True),
    Spec("group_id", str, "pm-polars", "consumer group of the fills consumer", "ID"),
    Spec("fills_pattern", str, r"^orders\.filled\..*",
         "regex of fill topics (must start with ^); new matching topics join at run time",
         "REGEX"),
    Spec("ticks_topic", str, "market.ticks", "topic of market ticks, read in full by every "
         "instance (no group)", "TOPIC"),
    Spec("ticks_start", str, "earliest", "where ticks start when Redis holds no tick offsets; "
         "'latest' is unreliable on tansu (re-delivers)", "WHERE", choices=("earliest", "latest")),
    Spec("dlq_topic", str, "pm.deadletter", "dead-letter topic for invalid records", "TOPIC"),
    Spec("archive_root", _optional_path, None, "archive every committed event (applied "
         "fills, duplicates, ticks, rejects) exactly once as Parquet under this directory "
         "(pm-polars replay/eod/report read it); off when not given", "DIR"),
    Spec("archive_roll_events", int, 500_000, "cut archive Parquet files when this many "
         "events are buffered", "N"),
    Spec("archive_roll_s", duration_s, 60.0, "cut archive Parquet files at least this often "
         "(seconds or 30s/5m)", "DURATION", shown="60s"),
    Spec("metrics_port", int, 9108, "port of /metrics and /healthz; 0 disables", "N"),
    Spec("metrics_host", str, "0.0.0.0", "address /metrics and /healthz bind to", "ADDR"),
    Spec("max_events", int, 50_000, "flush a micro-batch at this many records", "N"),
    Spec("max_wait_ms", float, 20.0, "flush a micro-batch this long after its first record",
         "MS"),
    Spec("prefetch_batches", int, 2, "micro-batches a consumer thread may collect ahead "
         "while the loop applies one (bounds memory: this many x max_events records); 0 "
         "consumes on the loop's own thread", "N"),
    Spec("tick_publish_ms", float, 1000.0, "republish a portfolio moved only by prices at "
         "most this often (fills publish at once; 0: every batch)", "MS"),
    Spec("starting_cash", float, 1_000_000.0, "cash credited to a portfolio at its first fill "
         "(account currency)", "AMOUNT"),
    Spec("instruments", _optional_path, None, "instruments CSV/Parquet (instrument_token, "
         "multiplier or lot_size); default: multiplier 1 for all", "FILE"),
    Spec("account_currency", str, "INR", "currency of every published money figure "
         "(ISO 4217 code, e.g. INR, USD); recorded in the Redis state, which is only "
         "reloaded under the currency that booked it. Instruments quoted or settled in "
         "another currency (quote_currency/inverse columns, rates from ticks of fx_pair "
         "instruments) are converted into it in every published total (positions stay in "
         "their pnl_currency; a missing rate publishes null totals and missing_rate)", "CODE"),
    Spec("cost_basis", str, "average", "how a reducing fill realizes P&L: against the "
         "position's average cost, or FIFO against its oldest open lots (lots are kept in "
         "the Redis state; a state is only reloaded under the method that booked it)",
         "METHOD", choices=COST_BASES),
    Spec("quantity_decimals", int, 0, "decimal places a fill's quantity may have (0: integer "
         "quantities, as always; up to 8, e.g. 8 for crypto); quantities are exact to them "
         "and a state is only reloaded under the value that booked it", "N"),
    Spec("mark", str, "last", "price a position's unrealized P&L and market value are "
         "marked at: the last price, or bid_ask (longs at the tick's bid, shorts at its ask, "
         "the last price when that side is missing; a state is only reloaded under the mark "
         "that published it)", "MODE", choices=MARKS),
    Spec("dedupe_retention", duration_s, 86_400.0, "remember fill ids this long (event "
         "time, seconds or 90s/15m/24h/7d) to drop redeliveries; keep Kafka retention longer",
         "DURATION", shown="24h"),
    Spec("day_roll_tz", str, "Asia/Kolkata", "timezone of the trading day (IANA name); an "
         "event's day is the date of its ts there", "TZ"),
    Spec("day_roll_time", str, "00:00", "local time the trading day starts at (HH:MM); the "
         "first event at or after it rolls the book (event time, never the wall clock)",
         "HH:MM"),
    Spec("max_event_jump", duration_s, 0.0, "refuse an event whose ts is more than this far "
         "ahead of the newest accepted event time; 0: off (the default: --max-clock-skew "
         "bounds every event against the wall clock, and a cold start reads a compacted "
         "ticks topic whose records may be months apart)", "DURATION", shown="0 (off)"),
    Spec("max_clock_skew", duration_s, 300.0, "refuse an event whose ts is more than this far "
         "ahead of this host's wall clock", "DURATION", shown="5m"),
    Spec("max_reject_ratio", float, 0.5, "stop (exit 3) if more than this share of the last "
         "--reject-window records is invalid", "RATIO"),
    Spec("reject_window", int, 1000, "records the reject ratio is measured over", "N"),
    Spec("key_prefix", str, "", "namespace prepended to every Redis key and channel", "PREFIX"),
    Spec("health_timeout", duration_s, 10.0, "/healthz answers 503 when the loop has not "
         "iterated for this long (seconds or 30s/1m)", "DURATION", shown="10s"),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
SECRET_WORDS = ("password", "secret", "key.pem", "sasl.oauthbearer.config")


@dataclass(frozen=True)
class Settings:
    """Validated settings of one daemon (see ``SPECS`` for meaning and defaults)."""

    bootstrap_servers: str
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
    redis_password: str | None = None
    group_id: str = "pm-polars"
    fills_pattern: str = r"^orders\.filled\..*"
    ticks_topic: str = "market.ticks"
    ticks_start: str = "earliest"
    dlq_topic: str = "pm.deadletter"
    archive_root: Path | None = None
    archive_roll_events: int = 500_000
    archive_roll_s: float = 60.0  # seconds
    metrics_port: int = 9108
    metrics_host: str = "0.0.0.0"
    max_events: int = 50_000
    max_wait_ms: float = 20.0
    prefetch_batches: int = 2
    tick_publish_ms: float = 1000.0
    starting_cash: float = 1_000_000.0
    instruments: Path | None = None
    dedupe_retention: float = 86_400.0  # seconds
    day_roll_tz: str = "Asia/Kolkata"
    day_roll_time: str = "00:00"
    max_event_jump: float = 0.0  # seconds; 0 = off
    max_clock_skew: float = 300.0  # seconds
    cost_basis: str = "average"
    quantity_decimals: int = 0  # decimal places of a quantity (0: integers)
    account_currency: str = "INR"
    mark: str = "last"  # "last" | "bid_ask" (``EngineConfig.mark``)
    max_reject_ratio: float = 0.5
    reject_window: int = 1000
    key_prefix: str = ""
    health_timeout: float = 10.0  # seconds
    kafka: dict[str, str] = field(default_factory=dict)
    alerts: AlertRules | None = None  # the config file's [alerts] table (daemon.alerts)

    def __post_init__(self) -> None:
        validate(self)

    def engine_config(self) -> EngineConfig:
        """The engine's configuration (retention converted once, seconds -> ns)."""
        return EngineConfig.of(self.starting_cash, self.dedupe_retention,
                               self.max_event_jump or None, self.max_clock_skew,
                               day_roll_tz=self.day_roll_tz, day_roll_time=self.day_roll_time,
                               cost_basis=self.cost_basis,
                               quantity_decimals=self.quantity_decimals,
                               account_currency=self.account_currency, mark=self.mark)


def _fail(name: str, problem: str, fix: str) -> ConfigError:
    spec = SPEC_BY_NAME.get(name)
    where = f"{spec.flag} / {spec.env} / '{name}' in the config file" if spec else name
    return ConfigError(f"setting {where}: {problem}. Fix: {fix}")


_YEAR_S = 365 * 86_400.0
# setting -> (low, low inclusive, high, valid range as said in the error); every one finite
_RANGES: dict[str, tuple[float, bool, float, str]] = {
    "max_events": (1, True, 10_000_000, "an integer from 1 to 10,000,000 records"),
    "reject_window": (1, True, 10_000_000, "an integer from 1 to 10,000,000 records"),
    "archive_roll_events": (1, True, 1e9, "an integer from 1 to 1e9 events"),
    "max_wait_ms": (0, False, 3_600_000, "milliseconds > 0, at most 3,600,000 (1 h)"),
    "tick_publish_ms": (0, True, 86_400_000, "milliseconds from 0 (every batch) to 86,400,000"),
    "health_timeout": (0, False, 86_400, "seconds > 0, at most 24h"),
    "archive_roll_s": (0, False, 86_400, "seconds > 0, at most 24h"),
    "dedupe_retention": (0, False, 100 * _YEAR_S, "seconds > 0, at most 100 years"),
    "max_event_jump": (0, True, 100 * _YEAR_S, "seconds from 0 (off) to 100 years"),
    "max_clock_skew": (0, False, 100 * _YEAR_S, "seconds > 0, at most 100 years"),
    "starting_cash": (0, True, 1e15, "a finite amount from 0 to 1e15 (account currency)"),
    "max_reject_ratio": (0, False, 1, "a fraction in (0, 1], such as 0.5"),
    "quantity_decimals": (0, True, MAX_QUANTITY_DECIMALS, "an integer from 0 (integer "
                          f"quantities) to {MAX_QUANTITY_DECIMALS} decimal places"),
    "prefetch_batches": (0, True, 1000, "an integer from 0 (consume on the loop's thread) to "
                         "1000 batches"),
}


def _check_numbers(s: Settings) -> None:
    """Every numeric setting finite and within its range (NaN and inf are refused)."""
    for name, (low, inclusive, high, valid) in _RANGES.items():
        value = getattr(s, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        above = number and (value >= low if inclusive else value > low)
        if not (number and math.isfinite(value) and above and value <= high):
            raise _fail(name, f"got {value!r}; valid: {valid}", f"give {valid}")


def validate(s: Settings) -> None:
    """Raise :class:`ConfigError` naming the first invalid setting and how to fix it."""
    if not s.bootstrap_servers:
        raise _fail("bootstrap_servers", "missing", "give the Kafka brokers as HOST:PORT")
    if urlsplit(s.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise _fail("redis_url", f"unsupported URL {redact_url(s.redis_url)!r}",
                    "use redis://HOST:PORT/DB, rediss://... (TLS) or unix:///path")
    if s.redis_cluster:
        url = urlsplit(s.redis_url)
        if url.scheme == "unix" or url.path not in ("", "/", "/0"):
            raise _fail("redis_cluster", f"Redis Cluster has only database 0 and TCP nodes, "
                        f"got {redact_url(s.redis_url)!r}",
                        "give --redis-url redis://HOST:PORT of any one cluster node (db 0)")
        if s.alerts is not None:  # the alert outbox is one group-wide key: no slot of its own
            raise _fail("redis_cluster", "the [alerts] table is not supported with Redis "
                        "Cluster yet (its outbox is a group-wide key outside the partitions' "
                        "slots)", "run alerts against a single Redis node, or remove [alerts]")
    if not s.fills_pattern.startswith("^"):
        raise _fail("fills_pattern", f"{s.fills_pattern!r} is not a regex subscription",
                    "start it with ^ (librdkafka only treats ^... as a pattern)")
    try:
        re.compile(s.fills_pattern)
    except re.error as exc:
        raise _fail("fills_pattern", f"invalid regex ({exc})", "fix the expression") from exc
    if re.match(s.fills_pattern, s.ticks_topic) or re.match(s.fills_pattern, s.dlq_topic):
        raise _fail("fills_pattern", "matches the ticks or dead-letter topic",
                    "narrow the pattern so only fill topics match")
    if s.ticks_start not in ("earliest", "latest"):
        raise _fail("ticks_start", f"{s.ticks_start!r}", "use earliest or latest")
    if s.cost_basis not in COST_BASES:
        raise _fail("cost_basis", f"{s.cost_basis!r}", f"use one of {', '.join(COST_BASES)}")
    if s.mark not in MARKS:
        raise _fail("mark", f"{s.mark!r}", f"use one of {', '.join(MARKS)}")
    _check_numbers(s)
    if not 0 <= s.metrics_port < 65536:
        raise _fail("metrics_port", f"{s.metrics_port} is not a port", "use 1-65535 or 0")
    if not is_currency(s.account_currency):
        raise _fail("account_currency", f"{s.account_currency!r} is not a currency code",
                    "give a three-letter ISO 4217 code in capitals, e.g. INR or USD")
    if s.instruments is not None and not s.instruments.exists():
        raise _fail("instruments", f"file {s.instruments} does not exist",
                    "point it at a CSV or Parquet instruments table")
    if s.instruments is not None:
        _check_instruments(s.instruments)
    try:
        tradingday.check_tz(s.day_roll_tz)
    except ValueError:
        raise _fail("day_roll_tz", f"{s.day_roll_tz!r} is not an IANA timezone",
                    "use a name such as Asia/Kolkata, Europe/London or UTC") from None
    try:
        tradingday.roll_minutes(s.day_roll_time)
    except ValueError:
        raise _fail("day_roll_time", f"{s.day_roll_time!r} is not a time of day",
                    "use HH:MM (24 h), e.g. 09:15") from None
    for key in s.kafka:
        if not key or "=" in key:
            raise ConfigError(f"librdkafka property {key!r} is malformed. Fix: -X key=value")


def _check_instruments(path: Path) -> None:
    """Refuse at start an instruments file the engine cannot read (the error names the
    setting). Any currency mix is fine: the publish path converts (``publish.fx_rows``)."""
    try:
        load_instruments(path)
    except InstrumentError as exc:
        raise _fail("instruments", f"file {path} cannot be used ({exc})",
                    "fix the file's columns") from None


def parse_value(name: str, text: Any) -> Any:
    """Parse one setting from text (env, flag) or a TOML value; errors name the setting."""
    spec = SPEC_BY_NAME[name]
    if spec.choices and str(text) not in spec.choices:
        raise _fail(name, f"{text!r} is not one of {', '.join(spec.choices)}",
                    f"use one of {', '.join(spec.choices)}")
    try:
        return spec.parse(text if isinstance(text, str) else str(text))
    except (TypeError, ValueError) as exc:
        raise _fail(name, f"cannot parse {text!r} ({exc})", f"give a {spec.metavar}") from exc


def is_secret_property(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redacted(s: Settings) -> dict[str, Any]:
    """Settings as a dict that is safe to log: secrets become ``***``."""
    out: dict[str, Any] = {}
    for spec in SPECS:
        value = getattr(s, spec.name)
        if spec.secret and value:
            value = "***"
        out[spec.name] = str(value) if isinstance(value, Path) else value
    out["redis_url"] = redact_url(s.redis_url)
    out["kafka"] = {k: ("***" if is_secret_property(k) else v) for k, v in s.kafka.items()}
    return out
