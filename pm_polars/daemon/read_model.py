"""What this instance last published, per owned partition, and conflated tick republishing.

A batch costs what it changed, not the size of the book:

* Documents: a portfolio is rendered and rewritten only when it is *published*: at once when
  a fill of the batch touched it (or it is new, or its partition was (re)loaded), and, when
  only prices moved it (a tick on an instrument it holds), at most once per
  ``interval_ns`` (``--tick-publish-ms``; 0: at once, every batch). A tick-changed portfolio
  not yet due stays *dirty* and is published by the first batch (or idle loop, see
  :meth:`ReadModel.due`) after its interval.
* Aggregates: a partition's ``{source}_Overall``/aum contribution is the exact sum of the
  rows it published last (kept here: ``rows``, and their sums ``sums``), so the aggregates
  always equal the sum of the published strategy documents, whatever was conflated. A
  batch renders only the portfolios it publishes and updates the sums by their old and new
  rows (``publish.part_sums``): O(published), not O(book).

Nothing here moves before the EXEC: a batch computes a :class:`ViewUpdate` and the daemon
:meth:`ReadModel.commit` s it after the checkpoint committed (a failed attempt leaves the
kept rows as they were). A partition dropped (revoked, stale) loses its rows; one that is
not kept (first batch after a load) is rendered whole, which is also how it is republished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pm_polars.publish.part_sums import PartSums, Rendered
from pm_polars.types import TP


@dataclass
class ViewUpdate:
    """One batch's change to the kept rows: ``rendered`` per partition (``whole``: the
    partition's complete set, replacing what was kept) and the portfolios published."""

    rendered: dict[TP, dict[str, Rendered]] = field(default_factory=dict)
    whole: set[TP] = field(default_factory=set)
    published: set[str] = field(default_factory=set)
    sums: dict[TP, PartSums] = field(default_factory=dict)  # changed partitions' new sums
    at_ns: int = 0


class ReadModel:
    """Kept published rows per partition, and the conflation state of tick republishing."""

    def __init__(self, interval_ns: int = 0) -> None:
        self.interval_ns = interval_ns
        self.rows: dict[TP, dict[str, Rendered]] = {}
        self.sums: dict[TP, PartSums] = {}  # exact sums of ``rows`` (``part_sums``)
        self.last: dict[str, int] = {}  # portfolio -> ns of its last publish
        self.dirty: set[str] = set()  # moved by prices since its last publish
        self.next_due: int | None = None  # when the first dirty portfolio falls due

    def select(self, tick_changed: Iterable[str], now_ns: int) -> set[str]:
        """Of the portfolios moved only by prices (this batch's and earlier dirty ones),
        those due now: never published, or last published ``interval_ns`` ago or more."""
        self.dirty.update(tick_changed)  # harmless before the commit: published = cleared
        if not self.interval_ns:
            return set(self.dirty)
        since = now_ns - self.interval_ns
        last = self.last
        return {pid for pid in self.dirty if last.get(pid, since) <= since}

    def due(self, now_ns: int) -> bool:
        """A dirty portfolio fell due (the idle loop runs a batch for it)."""
        return self.next_due is not None and now_ns >= self.next_due

    def commit(self, update: ViewUpdate) -> None:
        """After the EXEC: keep the batch's rows, note its publish time, clear its dirt."""
        for tp, rows in update.rendered.items():
            if tp in update.whole:
                self.rows[tp] = dict(rows)
            else:
                self.rows.setdefault(tp, {}).update(rows)
        self.sums.update(update.sums)
        for pid in update.published:
            self.last[pid] = update.at_ns
        self.dirty -= update.published
        if self.dirty and self.interval_ns:
            self.next_due = min(self.last.get(p, 0) for p in self.dirty) + self.interval_ns
        else:
            self.next_due = None

    def drop(self, tps: Iterable[TP], pids: Iterable[str]) -> None:
        """Forget partitions (revoked or stale) and their portfolios."""
        for tp in tps:
            self.rows.pop(tp, None)
            self.sums.pop(tp, None)
        for pid in pids:
            self.last.pop(pid, None)
            self.dirty.discard(pid)
