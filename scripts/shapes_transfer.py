"""Accuracy of a shapes run's model on source and target test images at several gaps.

    python scripts/shapes_transfer.py RUN_DIR [ROUND]

RUN_DIR: a run of data=shapes (e.g. `alseg run experiment=lamda_synthetic active.rounds=1
active.init_steps=600`, whose round-0 checkpoint is the source-only model); ROUND: the
checkpoint (default 0; the run keeps only its last `active.keep_checkpoints` rounds).
Shows how well the model transfers as the target's appearance shift (data.gap) grows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from rich.console import Console

from alseg.build import build_loop
from alseg.config import load_run_config
from alseg.data.shapes import SyntheticShapes

GAPS = (0.0, 0.25, 0.5, 1.0)


def main(run: Path, round: int) -> None:
    cfg = load_run_config(run)
    if cfg.data.name != "shapes":
        sys.exit(f"{run}: data={cfg.data.name}; this script reads runs of data=shapes")
    loop = build_loop(cfg, run, True, Console(quiet=True), False, read_only=True)
    model = loop.load_model(round)
    model.eval()
    d = cfg.data
    print(f"{run} round {round}: test accuracy (chance {100 / SyntheticShapes.num_classes:.1f}%)")
    for domain, gap in [("source", 1.0)] + [("target", g) for g in GAPS]:
        ds = SyntheticShapes(
            "test", int(d.num_test), int(d.image_size), domain, int(d.seed), float(d.imbalance), gap
        )
        x = ds.images.float() / 255
        with torch.no_grad():
            logits = torch.cat([model(x[i : i + 100]) for i in range(0, len(x), 100)])
        pred = logits.mean((2, 3)).argmax(1).numpy()  # the image's logits are at every pixel
        name = "source" if domain == "source" else f"target, gap {gap:g}"
        print(f"  {name:<16} {100 * (pred == ds.labels).mean():5.1f}%")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 0)
