"""The daemon's Parquet archive (``--archive-root``): every record exactly once, crash or not.

Scenario: a backlog with duplicates and malformed records; Redis is killed while the daemon
is mid-stream, so the batch in flight is *staged* in the archive's write-ahead segment but
its EXEC fails; then the daemon is killed -9 (segment orphaned, rows buffered in memory
lost). After Redis and the daemon restart, the orphan is recovered: exactly the rows below
the offsets stored in Redis, the uncommitted ones being re-read and archived once. At the
end every produced record is in the archive exactly once (raw files, no reader dedupe
needed), in the kind it belongs to, and ``pm-polars replay`` of the archive gives the state
in Redis.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from support import KafkaBroker, RedisServer, produce
from support.daemon import wait_for
from support.feeds import feed, reference
from support.fixtures import StartDaemon
from support.names import Names
from support.published import differences

from pm_polars import PortfolioEngine
from pm_polars.analytics import connect
from pm_polars.archive import read
from pm_polars.daemon.checkpoint.staging import decode_all, staging_dir
from pm_polars.events import decode_messages
from pm_polars.types import RECORD_ID

pytestmark = pytest.mark.integration
KEY = list(RECORD_ID)


def _segments(root: Path, names: Names) -> list[Path]:
    return sorted(staging_dir(root, names.group).glob("*.seg"))


def _stored(client, names: Names) -> dict[tuple[str, int], int]:  # type: ignore[no-untyped-def]
    out = {}
    for key in client.scan_iter(f"pm:state:{names.group}:*:meta"):
        _, _, _, topic, part, _ = key.split(":")
        out[(topic, int(part))] = int(client.hget(key, "next_offset"))
    for part, off in client.hgetall(f"pm:ticks:{names.ticks}:offsets").items():
        out[(names.ticks, int(part))] = int(off)
    return out


def _all_rows(root: Path, kind: str) -> pl.DataFrame:
    files = sorted(root.glob(f"{kind}/date=*/*.parquet"))
    if not files:
        return pl.DataFrame(schema={"topic": pl.String, "partition": pl.Int32,
                                    "offset": pl.Int64})
    return pl.read_parquet(files, columns=KEY, hive_partitioning=False)


def test_archive_exactly_once_across_redis_outage_and_kill_9(
    broker: KafkaBroker, redis_srv: RedisServer, topics: Names, start_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    names = topics
    root = tmp_path / "archive"
    records = feed(names, 20_000, seed=13, malformed_rate=0.005, duplicate_rate=0.01)
    produce(broker.bootstrap, records)
    client = redis_srv.client()
    archive = ("--archive-root", str(root), "--archive-roll-events", "3000")
    daemon = start_daemon(*archive, "--max-events", "200", "--max-wait-ms", "5")
    fills_total = sum(1 for t, _, _ in records if t != names.ticks)

    def fills_done() -> int:
        return sum(o for (t, _), o in _stored(client, names).items() if t != names.ticks)

    wait_for("a third of the fills committed", lambda: fills_done() > fills_total // 3,
             diagnose=lambda: daemon.log()[-2000:], interval=0.02)

    # Redis dies mid-stream: the batch in flight is staged, its EXEC fails and is retried
    redis_srv.stop()
    # attempt 2 staged again, which first waited for attempt 1's staging to be durable
    wait_for("two failed commits", lambda: "what=checkpoint attempt=2" in daemon.log(),
             diagnose=lambda: daemon.log()[-2000:])
    daemon.kill()
    redis_srv.start()
    stored = _stored(client, names)
    assert fills_done() < fills_total  # really mid-stream
    limits = pl.DataFrame([(t, p, o) for (t, p), o in stored.items()], orient="row",
                          schema={"topic": pl.String, "partition": pl.Int32, "limit": pl.Int64})
    staged = [f for seg in _segments(root, names) for r in decode_all(seg.read_bytes())
              for f in r.frames.values()]
    beyond = sum(f.join(limits, on=["topic", "partition"], how="left")
                 .filter(pl.col("offset") >= pl.col("limit").fill_null(0)).height for f in staged)
    assert beyond > 0, "expected rows staged but not committed at the kill"

    restarted = start_daemon(*archive, "--max-events", "1000")
    ref = reference(records)
    wait_for("exact state after restart", lambda: not differences(client, ref),
             diagnose=lambda: "\n".join(differences(client, ref)[:10]) + restarted.log()[-2000:])
    assert restarted.terminate() == 0, restarted.log()[-3000:]
    assert "event=archive_recovered" in restarted.log()
    assert not _segments(root, names), "a clean stop leaves no staging segment"
    assert not list(root.rglob(".*.tmp")), "no temp files left"

    # every produced record exactly once across all raw files, in the right kind
    rows = {k: _all_rows(root, k) for k in ("fills", "ticks", "rejects", "duplicates")}
    union = pl.concat(rows.values())
    assert union.height == len(records) == union.unique(KEY).height
    per_partition = Counter(union.select("topic", "partition").iter_rows())
    for (topic, part), n in per_partition.items():
        offsets = union.filter((pl.col("topic") == topic) & (pl.col("partition") == part))
        assert offsets["offset"].sort().to_list() == list(range(n)), (topic, part)
    decoded = decode_messages([v for _, _, v in records])
    applied = ref.snapshot().seen.height  # every demo fill carries a fill_id
    assert rows["fills"].height == applied
    assert rows["duplicates"].height == decoded.fills.height - applied > 0
    assert rows["ticks"].height == decoded.ticks.height
    assert rows["rejects"].height == decoded.rejects.height > 0

    # the archive views (Polars reader and DuckDB) hold no duplicate either
    assert read(root, "fills").height == applied
    con = connect(root)
    for kind, frame in rows.items():
        total, distinct = con.execute(
            f'SELECT count(*), count(DISTINCT (topic, "partition", "offset")) FROM {kind}'
        ).fetchone()  # type: ignore[misc]
        assert total == distinct == frame.height, kind

    # pm-polars replay of the archive rebuilds the state that is in Redis
    snap = tmp_path / "rebuilt"
    done = subprocess.run(
        [sys.executable, "-m", "pm_polars.cli", "replay", "--archive-root", str(root),
         "--snapshot-out", str(snap)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert differences(client, PortfolioEngine.restore(snap)) == []
