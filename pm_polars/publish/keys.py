"""The Redis key layout: the one place that names keys. Readers and writers both use it.

Every key can carry a namespace prefix (``Keys(prefix="desk1:")``); the default is none, so
the published keys are exactly the documented ones.

Published read model (for APIs, dashboards, existing readers)
-------------------------------------------------------------
``portfolio:{portfolio_id}``            STRING  JSON of the published portfolio model
                                                (also ``{source}_Overall`` aggregates)
``position:{portfolio_id}:{token}``     HASH    one position's fields (quantity,
                                                average_price, last_price, ...) as strings
``portfolios``                          SET     index of all portfolio ids (incl. Overall)
``prices``                              HASH    token -> JSON {"last_price", "ts"} (ts in ns;
                                                "bid", "ask" when quoted)
``aum``                                 STRING  JSON {"total", "by_source": {source: float}}
channel ``portfolio-updates``           PUBSUB  JSON {"portfolio_ids": [...], "ts": ns}

Daemon-internal state (exactly-once; written in the same MULTI/EXEC as the model)
----------------------------------------------------------------------------------
``pm:state:{group}:{topic}:{partition}:positions``  HASH  "{pid}|{token}" -> JSON state row
``pm:state:{group}:{topic}:{partition}:cash``       HASH  pid -> JSON cash row
``pm:state:{group}:{topic}:{partition}:seen``       ZSET  "{source}|{fill_id}" scored by ts
``pm:state:{group}:{topic}:{partition}:marks``      HASH  token -> JSON mark row
``pm:state:{group}:{topic}:{partition}:meta``       HASH  next_offset, clock_ns, updated_ns
``pm:parts:{group}:overall:{source}``               HASH  "{topic}:{partition}" -> JSON
                                                          contribution to {source}_Overall
``pm:parts:{group}:aum``                            HASH  "{topic}:{partition}" -> JSON
                                                          contribution to aum
``pm:owner:{group}``                                HASH  pid -> "{topic}:{partition}"
``pm:ticks:{topic}:offsets``                        HASH  partition -> next offset
``pm:day:{group}``                                  HASH  trading_day, roll_prices (the roll)
``pm:alerts:outbox:{group}``                        LIST  alerts not yet produced to Kafka
``pm:state:{group}:{topic}:{partition}:alerts``     HASH  pid -> JSON alert state

Redis Cluster (``Keys(cluster=True)``, ``--redis-cluster``)
-----------------------------------------------------------
The published names do not change. The daemon's own keys carry hash tags (the text in the
first ``{...}`` is what Redis hashes), so that everything one transaction touches shares a
slot (``G:T:P`` = group, topic, partition; braces below are literal):

``pm:state:{G:T:P}:positions|cash|seen|marks|meta``  the partition's state and next_offset
``pm:state:{G:T:P}:parts``          HASH  its contributions: ``overall:{source}``, ``aum``
``pm:parts:{portfolio:S_Overall}:G`` (and ``:seq``)  copies of the contributions to
                                          ``portfolio:S_Overall``, in that document's slot
``pm:parts:{aum}:G`` (and ``:seq``)       the same for ``aum``
``pm:v:{<published key>}``          STRING version of a derived document (writes only move on)
``pm:owner:{G}``                    HASH  portfolio -> partition (claims, one slot)
``pm:ticks:{prices}:T:offsets``     HASH  tick offsets, in the slot of ``prices``
"""

from __future__ import annotations

from dataclasses import dataclass

UPDATES_CHANNEL = "portfolio-updates"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes for ``key``: the text of its first non-empty ``{...}``,
    else the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


@dataclass(frozen=True)
class Keys:
    """Key names under an optional namespace ``prefix``; ``cluster``: the hash-tagged
    layout of the daemon's own keys (published names are the same either way)."""

    prefix: str = ""
    cluster: bool = False

    # ---- published read model
    def portfolio(self, portfolio_id: str) -> str:
        return f"{self.prefix}portfolio:{portfolio_id}"

    def position(self, portfolio_id: str, token: int | str) -> str:
        return f"{self.prefix}position:{portfolio_id}:{token}"

    @property
    def index(self) -> str:
        return f"{self.prefix}portfolios"

    @property
    def prices(self) -> str:
        return f"{self.prefix}prices"

    @property
    def aum(self) -> str:
        return f"{self.prefix}aum"

    @property
    def updates_channel(self) -> str:
        return f"{self.prefix}{UPDATES_CHANNEL}"

    # ---- daemon-internal state
    def partition_state(self, group: str, topic: str, partition: int, table: str) -> str:
        """``table`` is one of positions, cash, seen, marks, meta (cluster: also parts)."""
        if self.cluster:
            return f"{self.prefix}pm:state:{{{group}:{topic}:{partition}}}:{table}"
        return f"{self.prefix}pm:state:{group}:{topic}:{partition}:{table}"

    def overall_parts(self, group: str, source: str) -> str:
        if self.cluster:
            return f"{self.prefix}pm:parts:{{{self.portfolio(source + '_Overall')}}}:{group}"
        return f"{self.prefix}pm:parts:{group}:overall:{source}"

    def aum_parts(self, group: str) -> str:
        if self.cluster:
            return f"{self.prefix}pm:parts:{{{self.aum}}}:{group}"
        return f"{self.prefix}pm:parts:{group}:aum"

    def owners(self, group: str) -> str:
        if self.cluster:
            return f"{self.prefix}pm:owner:{{{group}}}"
        return f"{self.prefix}pm:owner:{group}"

    def version(self, key: str) -> str:
        """Cluster: the version of the derived document ``key``, in ``key``'s slot."""
        return f"{self.prefix}pm:v:{{{hash_tag(key)}}}"

    def alerts_outbox(self, group: str) -> str:
        """LIST of alert JSON committed but not yet produced to Kafka (``daemon.alerts``)."""
        return f"{self.prefix}pm:alerts:outbox:{group}"

    def channel(self, name: str) -> str:
        """A pub/sub channel name under the prefix (e.g. the alerts channel)."""
        return f"{self.prefix}{name}"

    def day(self, group: str) -> str:
        """The group's last trading-day roll: ``trading_day`` (days since 1970-01-01) and
        ``roll_prices`` (JSON token -> mark at the roll)."""
        return f"{self.prefix}pm:day:{group}"

    def tick_offsets(self, topic: str) -> str:
        if self.cluster:
            return f"{self.prefix}pm:ticks:{{{self.prices}}}:{topic}:offsets"
        return f"{self.prefix}pm:ticks:{topic}:offsets"


def part_name(topic: str, partition: int) -> str:
    """Field name identifying one Kafka partition in the ``pm:parts`` hashes."""
    return f"{topic}:{partition}"
