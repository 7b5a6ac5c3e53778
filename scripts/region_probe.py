"""A linear probe on region embeddings (alseg.probe): what a pre-trained encoder carries
before the first label, against the same probe on a freshly initialised encoder.

    python scripts/region_probe.py --weights runs/pretrain/simclr-... data=labelmefacade \
        data.root=../shared/data/labelmefacade

Prints one row per encoder (pixel / region / mean class accuracy of the probe on the
regions of the held-out half of the pool's images) and the embedding time.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl

from alseg.build import model_spec
from alseg.config import compose
from alseg.diagnose import region_class_counts
from alseg.models.segmentation import TrainSpan
from alseg.parts import build_datasets, build_regions
from alseg.probe import embed_regions, linear_probe
from alseg.schema import settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="an `alseg pretrain` run dir or weights file")
    ap.add_argument("overrides", nargs="*", help="config overrides (the data set)")
    args = ap.parse_args()
    cfg = compose(args.overrides)
    train, _, _ = build_datasets(settings(cfg).data)
    regions = build_regions(settings(cfg).regions, train)
    C = train.num_classes
    counts = region_class_counts(
        lambda i: regions.maps[i], lambda i: train.mask(i).numpy(), len(train), regions.offsets, C
    )
    print("| encoder | pixel acc % | region acc % | class acc % | regions fit / scored | embed s |")
    print("|---|---|---|---|---|---|")
    for name, weights in (("random weights", None), ("pre-trained", args.weights)):
        cfg.model.encoder_weights = weights
        pl.seed_everything(int(cfg.seed), verbose=False)
        model = model_spec(settings(cfg), train).build(1, TrainSpan())
        t0 = time.perf_counter()
        x = embed_regions(model, train, regions)
        dt = time.perf_counter() - t0
        r = linear_probe(x, counts, regions.offsets, seed=int(cfg.seed))
        print(
            f"| {name} | {r['pixel_acc']:.1f} | {r['region_acc']:.1f} | {r['class_acc']:.1f} | "
            f"{r['fit_regions']} / {r['scored_regions']} | {dt:.0f} |"
        )


if __name__ == "__main__":
    main()
