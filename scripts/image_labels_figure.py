"""What a run of image-level labels produced, image by image, for one round.

    python scripts/image_labels_figure.py RUN_DIR [--round R] [--images N] [--out PNG]

RUN_DIR: a run of labeling=image (e.g. `alseg run experiment=image_labels_synthetic`).
Columns: the tagged image, its ground truth, the confident CAM areas (cam_labels/; black:
not confident), the boundary network's B, the random-walk pseudo labels (weak_labels/),
and the evaluated (stage-2) model's prediction. The round's checkpoints must still be in
the run dir (the last `active.keep_checkpoints` rounds are kept); default: the last round.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from alseg.build import build_loop
from alseg.config import load_run_config
from alseg.data.label_maps import label_map_path, load_label_map
from alseg.extensions.image_labels import BOUNDARY_STAGE, CAMS, WALK, ImageLabels
from alseg.plots import _pyplot


def colour(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) colours; values outside the palette (void) black."""
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    ok = labels < len(palette)
    out[ok] = palette[labels[ok]]
    return out


@torch.no_grad()
def main(run: Path, r: int | None, n: int, out: Path) -> None:
    cfg = load_run_config(run)
    if cfg.labeling.type != "image":
        sys.exit(f"{run}: labeling={cfg.labeling.type}; this script reads runs of labeling=image")
    loop = build_loop(cfg, run, True, Console(quiet=True), False, read_only=True)
    if r is None:
        r = int(json.loads((run / "state.json").read_text())["round"])
    ext = next(e for e in loop.extensions if isinstance(e, ImageLabels))
    boundary = ext.boundary_module()
    boundary.load_state_dict(loop.rundir.load_checkpoint(r, stage=BOUNDARY_STAGE))
    model = loop.load_model(r, stage=2)
    boundary.eval()
    model.eval()
    folder, cams = loop.rundir.round_folder(WALK, r), loop.rundir.round_folder(CAMS, r)
    tagged = sorted(int(p.stem) for p in folder.glob("*.png"))[:n]
    data = loop.dm.train_set
    palette = np.asarray(data.palette, dtype=np.uint8)
    plt = _pyplot()
    titles = ("image", "ground truth", "confident CAM areas", "boundaries B", "pseudo labels",
              "stage-2 prediction")  # fmt: skip
    fig, axes = plt.subplots(len(tagged), 6, figsize=(9, 1.6 * len(tagged)), squeeze=False)
    for row, index in zip(axes, tagged):
        sample = data[index]
        image = sample["image"][None]
        B = boundary.boundary(image)[0].numpy()
        pred = model(image)[0, : data.num_classes].argmax(0).numpy()
        tiles = [
            data.image_uint8(index),
            colour(sample["mask"].numpy(), palette),
            colour(load_label_map(label_map_path(cams, index)).numpy(), palette),
            B,
            colour(load_label_map(label_map_path(folder, index)).numpy(), palette),
            colour(pred, palette),
        ]  # fmt: skip
        for ax, tile, title in zip(row, tiles, titles):
            ax.imshow(tile, cmap="gray" if tile.ndim == 2 else None, interpolation="nearest")
            ax.set_title(title if index == tagged[0] else "", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{run.name}, round {r}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} ({len(tagged)} images)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--round", type=int, default=None)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("image_labels.png"))
    a = p.parse_args()
    main(a.run, a.round, a.images, a.out)
