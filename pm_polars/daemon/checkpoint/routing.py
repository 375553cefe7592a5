"""Redis Cluster: a :class:`CommitPlan`'s encoded commands sorted by where they must go.

The plan's commands (``codec``, ``model_rows``) are encoded once, for either layout, as
whole RESP commands. On a cluster they cannot share one MULTI/EXEC, so they are walked
(one step per argument, no copy; only documents and contributions are unpacked) and routed:

* commands on a partition's hash-tagged state keys -> that partition's transaction;
* ``pm:parts`` contributions (one field per partition) -> that partition's transaction
  (``pm:state:{G:T:P}:parts``) and, after it, a guarded copy next to the aggregate;
* ``MSET`` of documents -> one ``SET`` each, ``position:*`` hashes, ``SADD portfolios``
  -> derived writes after the partition commits, each document guarded by the version
  (commit sequence) of the partition it belongs to.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pm_polars.daemon.checkpoint.plan import CommitPlan
from pm_polars.publish.keys import Keys, hash_tag, part_name
from pm_polars.types import TP


@dataclass
class Routed:
    """``state``: per partition, its raw commands; ``parts``: per partition, its
    contribution fields (``overall:{source}`` / ``aum`` -> JSON); ``documents``: ``(pid,
    command name, key, args)`` derived writes; ``index``: ids to ``SADD``."""

    state: dict[TP, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    parts: dict[TP, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    documents: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    index: list[str] = field(default_factory=list)


def walk(data: bytes) -> list[tuple[int, int, list[int]]]:
    """Each command in ``data`` as ``(start, end, argument offsets)``; an argument offset
    points at its ``$``."""
    out, pos, size = [], 0, len(data)
    while pos < size:
        start = pos
        eol = data.index(b"\r\n", pos)
        argc = int(data[pos + 1:eol])
        pos, offsets = eol + 2, []
        for _ in range(argc):
            offsets.append(pos)
            eol = data.index(b"\r\n", pos)
            pos = eol + 2 + int(data[pos + 1:eol]) + 2
        out.append((start, pos, offsets))
    return out


def _arg(data: bytes, at: int) -> str:
    eol = data.index(b"\r\n", at)
    return data[eol + 2:eol + 2 + int(data[at + 1:eol])].decode()


def route(plan: CommitPlan, keys: Keys, group: str, homes: dict[str, TP]) -> Routed:
    """Route ``plan.commands``; ``homes``: partition of every published portfolio."""
    out = Routed()
    by_tag = {hash_tag(keys.partition_state(group, tp[0], tp[1], "meta")): tp
              for tp in (pc.tp for pc in plan.partitions)}
    by_part = {part_name(*tp): tp for tp in by_tag.values()}
    contributions = {keys.overall_parts(group, s): f"overall:{s}" for s in plan.sources}
    contributions[keys.aum_parts(group)] = "aum"
    position, index = keys.position("", ""), keys.index
    for data in plan.commands:
        for start, end, offsets in walk(data):
            name, key = _arg(data, offsets[0]).upper(), _arg(data, offsets[1])
            tp = by_tag.get(hash_tag(key))
            if tp is not None and key.startswith(f"{keys.prefix}pm:state:"):
                out.state[tp].append(data[start:end])
            elif key in contributions:
                args = [_arg(data, o) for o in offsets[2:]]
                for part, doc in zip(args[::2], args[1::2], strict=True):
                    out.parts[by_part[part]][contributions[key]] = doc
            elif name == "MSET":
                args = [_arg(data, o) for o in offsets[1:]]
                at = len(keys.portfolio(""))
                for k, doc in zip(args[::2], args[1::2], strict=True):
                    out.documents.append((k[at:], "SET", k, [doc]))
            elif key.startswith(position[:-1]):
                pid = key[len(position) - 1:].rpartition(":")[0]
                out.documents.append((pid, name, key, [_arg(data, o) for o in offsets[2:]]))
            elif key == index:
                out.index += [_arg(data, o) for o in offsets[2:]]
            else:
                raise ValueError(f"no cluster route for {name} {key!r}")
    missing = {pid for pid, *_ in out.documents} - set(homes)
    if missing:
        raise ValueError(f"documents without a partition: {sorted(missing)[:5]}")
    return out
