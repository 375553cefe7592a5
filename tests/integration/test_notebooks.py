"""The shipped notebooks run top to bottom against a small demo archive (nbclient).

A failing cell fails the test. The notebooks find the archive through ``PM_ARCHIVE_ROOT``
and compute the missing end-of-day snapshots themselves.
"""

from __future__ import annotations

import io
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pm_polars.demo.runner import run_demo

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("nb")
    run_demo(events=20_000, batch_size=2_000, seed=7, data_dir=data, refresh_s=1e9,
             out=io.StringIO(), archive_root=data / "archive")
    return data / "archive"


@pytest.mark.parametrize("name", ["portfolio_overview.ipynb", "trade_analysis.ipynb"])
def test_notebook_runs(name: str, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PM_ARCHIVE_ROOT", str(archive))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the charts rendered


def test_accounting_modes_notebook_runs() -> None:
    """Each accounting mode's cell runs (and asserts its hand-worked figure)."""
    nb = nbformat.read(NOTEBOOKS / "accounting_modes.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("5000.0" in str(o) for o in outputs)
