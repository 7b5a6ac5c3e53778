"""Console and W&B output of a debiasing run: a line per few epochs, the group
accuracies per epoch, the weight histogram and the most up-weighted samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from alseg.debias.data import GroupDataset

SHOWN = ("val_unbiased", "val_conflicting", "val_worst")


class DebiasTracker:
    """Args:
    console: rich console.
    wandb: a WandbLogger (its ``experiment``), or None.
    every: epochs between console lines (the first and the best epochs are shown too).
    """

    def __init__(self, console: Console, wandb: Any = None, every: int = 10) -> None:
        self.console, self.wandb, self.every = console, wandb, every
        self._defined: set[str] = set()

    def state(self) -> dict[str, Any]:
        return {"wandb_id": self.wandb.version} if self.wandb is not None else {}

    def epoch(self, fit: str, row: dict[str, Any], epochs: int) -> None:
        e = int(row["epoch"])
        if e == 1 or e % self.every == 0 or e == epochs:
            vals = "  ".join(f"{k[4:]} {row[k]:.1f}" for k in SHOWN)
            self.console.log(f"[cyan]{fit}[/] epoch {e}/{epochs}  val {vals}")
        if self.wandb is not None:
            exp = self.wandb.experiment
            if fit not in self._defined:
                exp.define_metric(f"{fit}/epoch")
                exp.define_metric(f"{fit}/*", step_metric=f"{fit}/epoch")
                self._defined.add(fit)
            exp.log({f"{fit}/{k}": v for k, v in row.items()})

    def finish(
        self, results: dict[str, Any], weights: pd.DataFrame, train: GroupDataset, top: int
    ) -> None:
        self._print(results)
        if self.wandb is None:
            return
        import wandb

        exp = self.wandb.experiment
        exp.log({"debias/weights": wandb.Histogram(weights["weight"].to_numpy())})
        order = weights.sort_values("weight", ascending=False).head(top)
        table = wandb.Table(columns=["index", "weight", "agreement", "label", "bias", "image"])
        for _, r in order.iterrows():
            i = int(r["index"])
            table.add_data(
                i,
                float(r["weight"]),
                float(r["agreement"]),
                train.class_names[int(r["label"])],
                train.bias_names[int(r["bias"])],
                wandb.Image(train.image_uint8(i)),
            )
        exp.log({"debias/most_upweighted": table})
        for split in ("val", "test"):
            for k, v in results[split].items():
                exp.summary[f"final/{split}_{k}"] = v
        exp.finish()

    def abort(self) -> None:
        if self.wandb is not None:
            self.wandb.experiment.finish(exit_code=1)

    def _print(self, results: dict[str, Any]) -> None:
        m = np.array(results["test_matrix"], dtype=float)
        table = Table(title=f"test accuracy (%) per group — {results['method']}")
        table.add_column("class \\ bias")
        for name in results["bias_names"]:
            table.add_column(name, justify="right")
        for c, name in enumerate(results["class_names"]):
            table.add_row(name, *(f"{v:.1f}" for v in m[c]))
        self.console.print(table)
        summary = Table(
            title=f"selected: epoch {results['selected']['epoch']} by val_{results['criterion']}"
        )
        for col in ("split", "unbiased", "aligned", "conflicting", "worst", "accuracy"):
            summary.add_column(col, justify="right")
        for split in ("val", "test"):
            s = results[split]
            summary.add_row(
                split,
                *(
                    f"{s[k]:.1f}"
                    for k in ("unbiased", "aligned", "conflicting", "worst", "accuracy")
                ),
            )
        self.console.print(summary)
