"""Helpers shared by tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType


def tiny_overrides(tmp: Path, *extra: str) -> list[str]:
    """Overrides for a 3-round experiment on 12 images of 32x32 (a few seconds)."""
    return [
        "data.num_train=12",
        "data.num_val=4",
        "data.num_test=6",
        "data.image_size=32",
        "data.batch_size=4",
        "data.pool_batch_size=5",
        "regions.n_segments=12",
        f"regions.cache_dir={tmp / 'cache'}",
        "regions.num_workers=1",
        "active.rounds=3",
        "active.budget=8",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        *extra,
    ]


def rewind(run_dir: Path, r: int, phase: str, metrics_rows: int | None = None) -> None:
    """Make a finished run dir look as if it was killed after round ``r``'s ``phase``:
    state.json goes back, metrics.csv keeps its header and ``metrics_rows`` rows, and the
    recorded checksum follows (as a real kill at that point leaves it)."""
    import hashlib
    import json

    state = json.loads((run_dir / "state.json").read_text())
    state.update(round=r, phase=phase)
    if metrics_rows is not None:
        path = run_dir / "metrics.csv"
        path.write_text("".join(path.read_text().splitlines(True)[: metrics_rows + 1]))
        state["files"]["metrics.csv"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (run_dir / "state.json").write_text(json.dumps(state))


def load_script(name: str) -> ModuleType:
    """The repository's ``scripts/<name>.py`` as a module (scripts are not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_wandb_logs(run_dir: Path) -> list[Path]:
    """The ``.wandb`` files of a run dir's offline W&B pieces, in time order, once W&B has
    written them out. ``finish()`` returns before W&B's service has flushed the file (read
    at once, it lacked the last rounds' rows in 3 of 4 runs); a run's process exits
    before anyone reads its files, and ``wandb.teardown()`` stands in for that exit here."""
    import wandb

    wandb.teardown()
    return sorted((run_dir / "wandb").glob("offline-run-*/*.wandb"))


def whole_pool(stats):
    """The ``PoolStats`` of a batch that is the whole pool: a strategy's ``RegionStats`` of
    it, every region and image scored."""
    import torch

    from alseg.acquisition.base import PoolStats

    per_region = stats.per_region()
    n = len(next(iter(per_region.values())))
    images = len(next(iter(stats.images.values()))) if stats.images else 0
    return PoolStats.build(
        per_region,
        torch.ones(n, dtype=torch.bool),
        stats.images,
        torch.ones(images, dtype=torch.bool),
        stats.groups(),
    )
