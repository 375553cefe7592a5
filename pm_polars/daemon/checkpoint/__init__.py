"""The checkpoint: the one home of a batch's state rows, offsets and archive staging.

Exactly-once rests on one ordered commit per batch (``store.Checkpoint.commit`` numbers
its steps): archive rows staged and fsynced (``staging``) -> offsets checked under WATCH ->
staging barrier -> ONE MULTI/EXEC with the state rows (``codec``), every partition's
``next_offset`` and tick offset, the read model and the aggregates (``plan``). Loading a
partition back reads the same rows through the same ``codec``.

Modules: ``plan`` (what a batch writes), ``codec`` (state rows <-> Redis fields),
``store`` (WATCH/MULTI/EXEC, load), ``staging`` (the archive's write-ahead segments).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pm_polars.daemon.checkpoint.plan import CommitOutcome, CommitPlan, PartitionCommit
    from pm_polars.daemon.checkpoint.store import Checkpoint

_FACE = {"Checkpoint": "store", "CommitOutcome": "plan", "CommitPlan": "plan",
         "PartitionCommit": "plan"}
__all__ = ["Checkpoint", "CommitOutcome", "CommitPlan", "PartitionCommit"]


def __getattr__(name: str) -> Any:  # lazy: importing the package imports nothing heavy
    if name in _FACE:
        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
