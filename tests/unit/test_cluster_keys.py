"""The Redis Cluster key layout: what one transaction touches shares one slot (CRC16 of
the hash tag, as Redis computes it), published names are unchanged, and the single-node
layout is exactly what it was."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from pm_polars.daemon.checkpoint.routing import walk
from pm_polars.publish.keys import Keys, hash_tag
from pm_polars.publish.resp import command

TABLES = ("positions", "cash", "seen", "marks", "meta", "parts")


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize("prefix", ["", "desk1:"])
def test_each_transaction_shares_a_slot(prefix: str) -> None:
    k = Keys(prefix, cluster=True)
    slots = {_slot(k.partition_state("g", "orders.filled.paper", 3, t)) for t in TABLES}
    assert len(slots) == 1
    other = _slot(k.partition_state("g", "orders.filled.paper", 4, "meta"))
    assert other != slots.pop()  # partitions spread over slots
    assert _slot(k.overall_parts("g", "paper")) == _slot(k.portfolio("paper_Overall"))
    assert _slot(k.overall_parts("g", "paper") + ":seq") == _slot(k.portfolio("paper_Overall"))
    assert _slot(k.aum_parts("g")) == _slot(k.aum)
    assert _slot(k.tick_offsets("market.ticks")) == _slot(k.prices)
    for key in (k.portfolio("paper_X"), k.position("paper_X", 256265), k.aum):
        assert _slot(k.version(key)) == _slot(key)
    # published names are the documented ones
    assert k.portfolio("paper_X") == f"{prefix}portfolio:paper_X"
    assert k.position("paper_X", 5) == f"{prefix}position:paper_X:5"
    assert (k.index, k.prices, k.aum) == (f"{prefix}portfolios", f"{prefix}prices",
                                          f"{prefix}aum")


def test_single_node_layout_unchanged() -> None:
    k = Keys()
    assert k.partition_state("g", "t", 0, "meta") == "pm:state:g:t:0:meta"
    assert k.overall_parts("g", "paper") == "pm:parts:g:overall:paper"
    assert k.aum_parts("g") == "pm:parts:g:aum"
    assert k.owners("g") == "pm:owner:g"
    assert k.tick_offsets("t") == "pm:ticks:t:offsets"


def test_hash_tag_rules() -> None:
    assert hash_tag("pm:state:{g:t:0}:meta") == "g:t:0"
    assert hash_tag("portfolio:paper_X") == "portfolio:paper_X"
    assert hash_tag("a{}b{c}") == "a{}b{c}"  # an empty first tag: the whole key (as Redis)
    assert _slot("pm:state:{g:t:0}:meta") == _slot("g:t:0")


def test_walk_splits_encoded_commands() -> None:
    data = command("HSET", "k", "é", "1") + command("MSET", "a", "b", "c", "d")
    parts = walk(data)
    assert [data[s:e] for s, e, _ in parts] == [command("HSET", "k", "é", "1"),
                                                command("MSET", "a", "b", "c", "d")]
    assert [len(offsets) for _, _, offsets in parts] == [4, 5]
