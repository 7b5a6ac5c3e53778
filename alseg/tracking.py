"""What a person sees of a run: console progress and tables (rich), and W&B logging.

One W&B run covers the whole experiment (all rounds); its id is kept in state.json so
that ``alseg resume`` continues the same W&B run. Every figure W&B gets is also written to
the run dir (metrics.csv, curve.png, selections/, overlays/), so nothing depends on W&B.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from alseg.plots import save_bar_chart, save_overlay_grid, selection_panels
from alseg.rundir import RunDir

if TYPE_CHECKING:
    from pytorch_lightning.loggers import WandbLogger

    from alseg.data.datamodule import ActiveDataModule
    from alseg.data.labels import Annotations


def _r4(x: float) -> float:
    return float(round(float(x), 4))


def round_row(
    r: int,
    store: Any,
    region_sizes: np.ndarray,
    metrics: dict[str, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Round r's row of metrics.csv: clicks and labeled share from the LabelStore, the
    evaluated model's val / test metrics, the extensions' columns (``extra``), then the
    per-class test IoU."""
    from alseg.data.labels import NO_CLASS

    usable = store.labeled_mask() & (store.region_targets() != NO_CLASS)
    row: dict[str, Any] = {
        "round": r,
        "clicks": _r4(store.spent()),
        "labeled_regions": int(store.labeled_mask().sum()),
        "labeled_pixels_pct": _r4(100 * region_sizes[usable].sum() / region_sizes.sum()),
        "val_mIoU": _r4(metrics["val/mIoU"]),
        "mIoU": _r4(metrics["test/mIoU"]),
        "acc": _r4(metrics["test/acc"]),
        **extra,
    }
    row.update({k[5:]: _r4(v) for k, v in metrics.items() if k.startswith("test/IoU_")})
    return row


def answer_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Clicks-free histogram of the answers of a round: each class named counts once per
    region (a multi-class answer "road|car" counts for road and for car), largest first."""
    counts: dict[str, int] = {}
    for r in rows:
        for a in str(r["answer"]).split("|"):
            counts[a] = counts.get(a, 0) + 1
    return dict(sorted(counts.items(), key=lambda t: (-t[1], t[0])))


def last_offline_step(folder: Path, run_id: str) -> int:
    """The largest history step in the offline W&B pieces of run ``run_id`` (-1: none).

    An offline run resumed after a kill writes a new ``offline-run-*`` folder whose steps
    would restart at 0; W&B drops history rows whose step is not larger than the last
    one synced, so the resumed piece continues after the largest step of the earlier ones
    and ``wandb sync`` of the pieces in time order makes one consistent history.
    """
    from alseg.wandb_offline import history

    last = -1
    for f in sorted(folder.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        try:
            rows = history(f)  # a piece cut off mid-record gives its complete rows
        except (OSError, ValueError):
            continue  # unreadable, or not a W&B file: it holds no step to continue after
        last = max([last, *(int(r.get("_step", -1)) for r in rows)])
    return last


def user_console() -> Console:
    """The console a person reads: the time and the message, no source-file column."""
    return Console(log_path=False)


class Tracker:
    """Args:
    rundir: run directory (overlays are written there).
    rounds: total rounds (for "round r/R" displays).
    budget: clicks per round.
    wandb: the experiment's WandbLogger, or None.
    console: rich console (quiet=True silences it, e.g. in tests).
    num_overlays: images per round drawn with their selected regions.
    rank_zero: False on other DDP ranks (no files, no console).
    """

    def __init__(
        self,
        rundir: RunDir,
        rounds: int,
        budget: float,
        wandb: WandbLogger | None = None,
        console: Console | None = None,
        num_overlays: int = 4,
        rank_zero: bool = True,
    ) -> None:
        self.rundir, self.rounds, self.budget = rundir, rounds, budget
        self.wandb = wandb
        self.console = console or user_console()
        self.num_overlays = num_overlays
        self.rank_zero = rank_zero  # other ranks print and write nothing
        if wandb is not None:
            exp = wandb.experiment
            exp.define_metric("al/clicks")
            exp.define_metric("al/*", step_metric="al/clicks")

    @property
    def wandb_id(self) -> str | None:
        """The W&B run's id (state.json keeps it, to resume the same run)."""
        return str(self.wandb.version) if self.wandb is not None else None

    def phase(self, r: int, name: str, items: int | None = None) -> None:
        what = f" ({items} images)" if items is not None else ""
        self.console.log(f"[bold cyan]round {r}/{self.rounds - 1}[/] {name}{what}")

    def resumed(self, r: int, phase: str) -> None:
        self.console.log(
            f"[bold yellow]resuming[/] {self.rundir.path} after round {r} phase '{phase}'"
        )
        if self.wandb is not None and self.rank_zero:
            exp = self.wandb.experiment
            last = last_offline_step(self.rundir.path / "wandb", exp.id)
            if last >= exp.step:  # offline: this piece continues the step count of the last
                exp.log({"al/resumed_round": r}, step=last + 1)

    def awaiting(self, r: int, pending: int) -> None:
        """Round ``r``'s queries wait for people: say what to do next."""
        d = self.rundir.path
        self.console.log(
            f"round {r}: {pending} queries wait for answers. Next: "
            f"[bold]alseg export {d}[/] (Label Studio tasks), answer them, "
            f"[bold]alseg import {d} ANSWERS.json[/], then [bold]alseg resume {d}[/]"
        )

    def log_selection(
        self, r: int, ann: Annotations, rows: Sequence[dict[str, Any]], dm: ActiveDataModule
    ) -> None:
        """Console summary; overlays and the answer histogram to the run dir; to W&B the
        selections table, overlays, histogram and the round's labels as an artifact."""
        counts = answer_counts(rows)
        hist = ", ".join(f"{a} {c}" for a, c in counts.items())
        self.console.log(
            f"[bold cyan]round {r}/{self.rounds - 1}[/] labeled {len(ann)} regions for "
            f"{ann.total_cost:g} clicks (total {dm.store.spent():g}); answers: {hist}"
        )
        if not self.rank_zero:
            return
        tiles, titles = self._overlays(ann, dm)
        out = self.rundir.path
        save_overlay_grid(tiles, out / "overlays" / f"round_{r:02d}.png", titles)
        save_bar_chart(counts, out / "histograms" / f"round_{r:02d}.png", f"answers, round {r}")
        if self.wandb is not None:
            self._log_wandb_selection(r, rows, counts, tiles, titles, dm.store.spent())

    def _overlays(
        self, ann: Annotations, dm: ActiveDataModule
    ) -> tuple[list[np.ndarray], list[str]]:
        """Panels (selected | answers | predicted) of the first images of a selection."""
        ds: Any = dm.labeled.dataset
        images, local = dm.regions.split_ids(ann.region_ids)
        shown = list(dict.fromkeys(images.tolist()))[: self.num_overlays]
        palette = np.array(getattr(ds, "palette", [(255, 255, 255)] * 256), dtype=np.uint8)
        answer_cls = np.where(ann.classes < len(palette), ann.classes, -1)
        pred = ann.predicted if ann.predicted is not None else np.full(len(ann), -1)
        tiles, titles = [], []
        for i in shown:
            sel = images == i
            tiles.append(
                selection_panels(
                    ds.image_uint8(i),
                    dm.regions.maps[i],
                    local[sel],
                    answer_cls[sel],
                    pred[sel],
                    palette,
                )
            )
            titles.append(f"image {i}: selected | answers | predicted")
        return tiles, titles

    def _log_wandb_selection(
        self,
        r: int,
        rows: Sequence[dict[str, Any]],
        counts: dict[str, int],
        tiles: list[np.ndarray],
        titles: list[str],
        spent: float,
    ) -> None:
        import wandb

        assert self.wandb is not None
        table = wandb.Table(columns=list(rows[0]) if rows else ["image"])
        for row in rows:
            table.add_data(*row.values())
        hist_table = wandb.Table(
            data=[[a, c] for a, c in counts.items()], columns=["answer", "count"]
        )
        exp = self.wandb.experiment
        exp.log(
            {
                "selections/table": table,
                "selections/overlays": [wandb.Image(t, caption=c) for t, c in zip(tiles, titles)],
                "selections/answers": wandb.plot.bar(
                    hist_table, "answer", "count", title="answers"
                ),
                "selections/round": r,
            }
        )
        art = wandb.Artifact(
            f"labels-{exp.id}", type="labels", metadata={"round": r, "clicks": spent}
        )
        art.add_file(str(self.rundir.labels_path(r)))
        art.add_file(str(self.rundir.selections_path(r)))
        exp.log_artifact(art, aliases=[f"round-{r}", "latest"])

    def log_round(self, row: dict[str, Any]) -> None:
        self.console.log(
            f"[bold green]round {row['round']}/{self.rounds - 1}[/] clicks {row['clicks']:g}  "
            f"labeled pixels {row['labeled_pixels_pct']:.2f}%  val mIoU {row['val_mIoU']:.2f}  "
            f"[bold]test mIoU {row['mIoU']:.2f}[/]"
        )
        if self.wandb is not None:
            self.wandb.experiment.log({f"al/{k}": v for k, v in row.items()})

    def abort(self) -> None:
        """The run stopped with an error: close its W&B run as failed (offline, what was
        logged stays in its folder; ``alseg resume`` continues it)."""
        if self.wandb is not None:
            self.wandb.experiment.finish(exit_code=1)

    def finish(self, rows: Sequence[dict[str, Any]]) -> None:
        table = Table(title=f"learning curve — {self.rundir.path}")
        for col in ("round", "clicks", "labeled px %", "val mIoU", "test mIoU"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                str(r["round"]),
                f"{float(r['clicks']):g}",
                f"{float(r['labeled_pixels_pct']):.2f}",
                f"{float(r['val_mIoU']):.2f}",
                f"{float(r['mIoU']):.2f}",
            )
        if rows:  # a run that stopped for answers before its first evaluation has none
            self.console.print(table)
        if self.wandb is not None:
            self.wandb.experiment.summary["final/mIoU"] = float(rows[-1]["mIoU"]) if rows else None
            self.wandb.experiment.finish()
