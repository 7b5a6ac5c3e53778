"""notebooks/analyze_runs.ipynb is stored without outputs and runs top to bottom on run
dirs made here."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analyze_runs.ipynb"


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes_on_run_dirs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for strategy in ("random", "entropy"):
        cfg = compose(tiny_overrides(tmp_path, "active.rounds=2", f"active.strategy={strategy}"))
        build_loop(
            cfg, tmp_path / "runs" / f"{strategy}-seed0", False, Console(quiet=True), False
        ).run()
    monkeypatch.setenv("ALSEG_RUNS", str(tmp_path / "runs" / "*"))
    monkeypatch.setenv("ALSEG_REPORT_DIR", str(tmp_path / "report"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "2 run dirs" in outputs
    assert "wins" in outputs and (tmp_path / "report" / "paired_curves.png").is_file()
    assert (tmp_path / "report" / "curves.png").is_file() and (
        tmp_path / "report" / "classes.png"
    ).is_file()
