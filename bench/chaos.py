"""Chaos bench: ``pm-polars run`` under kill -9 and a long soak, checked against the engine.

    .venv/bin/python -m bench.chaos [--events 200000] [--kills 20] [--seed 1]
    .venv/bin/python -m bench.chaos --soak [--soak-seconds 600] [--rate 1000] [--skip-kills]
    .venv/bin/python -m bench.chaos --cluster [--events 200000] [--kills 8] [--rate 2000]

1. Starts a tansu broker and redis-server(s) (AOF, fsync always; ``--no-aof`` to disable) on
   free ports, all killed at exit.
2. Kill phase (``support.chaos.kill_chaos``): ``--events`` records of the demo feed (30 %
   fills) with byte-identical duplicates, malformed records, the ``support.poison``
   catalogue and long-range redeliveries mixed in, produced in ``--kills + 1`` chunks while
   the daemon runs; the daemon is SIGKILLed ``--kills`` times at random points (random batch
   sizes per restart). After each kill the frozen Redis state must equal the reference of
   exactly what its stored offsets say was consumed; after each restart the caught-up state
   must equal the reference engine applied once to everything produced; at the end every
   malformed/poison record must be in the dead-letter topic with its reason.
3. Soak phase (``--soak``): one daemon under a steady ``--rate`` for ``--soak-seconds``;
   RSS sampled every 0.5 s (start = after the first committed batch) and the lag (records
   acknowledged by the broker but not yet committed to Redis); the final state must equal
   the reference.

4. Cluster phase (``--cluster``, instead of the others; ``support.cluster_chaos``): a
   3-master + 3-replica Redis Cluster, three daemons with ``--redis-cluster`` in one group
   on a stream paced at ``--rate``; ``--kills`` daemons killed with -9 at even shares of the
   stream (each replaced), one master killed with -9 half-way; the end state must equal
   the reference, the DLQ must hold every poison record.

Any mismatch stops the run with the differences (exit 1). Figures are printed at the end.
Wall-clock figures (elapsed, lag) depend on the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support import kafka_broker, redis_server
from tests.support.chaos import (
    KillFigures,
    Names,
    SoakFigures,
    build_stream,
    kill_chaos,
    soak,
)
from tests.support.cluster_chaos import cluster_chaos
from tests.support.ports import free_port
from tests.support.redis_cluster import redis_cluster

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f} s] {text}", flush=True)


def kill_phase(bootstrap: str, args: argparse.Namespace, tmp: Path) -> KillFigures:
    names = Names("c" + uuid.uuid4().hex[:8])
    names.create(bootstrap)
    stream = build_stream(names, args.events, seed=args.seed, poison_rate=0.002,
                          redeliver_rate=0.002)
    counts = stream.counts()
    say(f"kill phase: {len(stream.items):,} records {dict(counts)}")
    with redis_server(appendonly=not args.no_aof) as redis:
        return kill_chaos(bootstrap, redis.client(), redis.url, names, stream, tmp,
                          kills=args.kills, seed=args.seed, catch_up_timeout=600, say=say)


def soak_phase(bootstrap: str, args: argparse.Namespace, tmp: Path) -> SoakFigures:
    names = Names("s" + uuid.uuid4().hex[:8])
    names.create(bootstrap)
    retention = args.dedupe_retention
    # a redelivery older than the retention is applied again by design: leave them out
    stream = build_stream(names, int(args.rate * args.soak_seconds), seed=args.seed + 1,
                          poison_rate=0.001, redeliver_rate=0.002 if retention is None else 0.0)
    extra = [] if retention is None else ["--dedupe-retention", str(retention)]
    say(f"soak phase: {len(stream.items):,} records at {args.rate:,.0f}/s {' '.join(extra)}")
    with redis_server(appendonly=not args.no_aof) as redis:
        return soak(bootstrap, redis.client(), redis.url, names, stream, tmp,
                    rate=args.rate, port=free_port(), daemon_args=extra,
                    seen=retention is None, say=say)


def cluster_phase(args: argparse.Namespace, tmp: Path) -> int:
    rate = args.rate if args.rate != 1_000.0 else 2_000.0
    kills = args.kills if args.kills != 20 else 8
    shares = tuple(round((i + 1) / (kills + 1), 3) for i in range(kills))
    say(f"cluster phase: {args.events:,} feed records at {rate:,.0f}/s, {kills} daemon "
        "kills, one master kill")
    (tmp / "cluster").mkdir()
    try:
        with kafka_broker() as broker, redis_cluster(tmp / "cluster") as nodes:
            figures = cluster_chaos(broker.bootstrap, nodes, tmp, n_events=args.events,
                                    rate=rate, kill_at=shares, master_at=0.5, seed=args.seed)
    except (AssertionError, TimeoutError) as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    print("\n== cluster chaos figures (end state = reference, DLQ complete)")
    print("\n".join(figures.lines()))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="records of the kill phase")
    ap.add_argument("--kills", type=int, default=20, help="kill -9 count of the kill phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--soak", action="store_true", help="also run the soak phase")
    ap.add_argument("--soak-seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=float, default=1_000.0, help="soak events/s")
    ap.add_argument("--skip-kills", action="store_true", help="soak only")
    ap.add_argument("--dedupe-retention", type=float, default=None,
                    help="soak daemon's --dedupe-retention in seconds (default: the daemon's "
                    "24 h); when set, redeliveries of old fills are left out of the soak feed")
    ap.add_argument("--no-aof", action="store_true", help="redis-server without AOF")
    ap.add_argument("--cluster", action="store_true",
                    help="the Redis Cluster scenario (three daemons, a master killed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pm-chaos-"))
    say(f"daemon logs in {tmp}")
    if args.cluster:
        return cluster_phase(args, tmp)
    kills: KillFigures | None = None
    soaked: SoakFigures | None = None
    try:
        with kafka_broker() as broker:
            if not args.skip_kills:
                kills = kill_phase(broker.bootstrap, args, tmp)
            if args.soak:
                soaked = soak_phase(broker.bootstrap, args, tmp)
    except (AssertionError, TimeoutError) as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    print("\n== chaos figures")
    if kills is not None:
        print("\n".join(kills.lines()))
        for i, k in enumerate(kills.kills, 1):
            print(f"  kill {i:>2}: {k.mode:<8} batch {k.batch_events:>5}  committed "
                  f"{k.at_progress:>9,} of {k.produced:>9,} produced")
    if soaked is not None:
        print("\n".join(soaked.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
