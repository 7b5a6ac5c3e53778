"""Behaviour check for refactors: a tiny run of every experiment config that runs on the
embedded data, and a fingerprint of what each decided (labels, selections, metrics, scores).

    python scripts/behaviour_check.py OUT.json                  # fingerprints of this tree
    python scripts/behaviour_check.py OUT.json --against A.json # ... and the keys that differ

Run it before a change (on a clean checkout of the old commit) and after; a change that
keeps behaviour gives the same fingerprints. Runs are in-process, one thread, on CPU, so they
are deterministic; a run that crashes is recorded as its error. The *_cityscapes, *_voc,
*_officehome, *_celeba and *_gta5_cityscapes configs need their data sets (their tests run
them on fixture trees) and are left out. About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

ACTIVE = [
    "data.num_train=12",
    "data.num_val=4",
    "data.num_test=6",
    "data.image_size=32",
    "data.batch_size=4",
    "data.pool_batch_size=5",
    "regions.n_segments=12",
    "regions.num_workers=1",
    "active.rounds=2",
    "active.budget=8",
    "trainer.max_epochs=1",
]
SHAPES = [
    "data.num_train=40",
    "data.num_source=40",
    "data.num_val=6",
    "data.num_test=10",
    "data.image_size=16",
    "regions.cell=16",
    "active.rounds=2",
    "active.budget=4",
    "trainer.max_steps=3",
]
DEBIAS = [
    "data.num_train=120",
    "data.num_val=72",
    "data.num_test=72",
    "data.image_size=16",
    "debias.epochs=2",
    "debias.batch_size=32",
    "debias.lwbc.members=3",
    "debias.lwbc.warmup=1",
    "debias.jtt.upweight=[5]",
    "debias.ssl.epochs=1",
    "debias.ssl.batch_size=32",
]
PRUNE = [
    "data.num_train=32",
    "data.num_val=12",
    "data.num_test=18",
    "data.batch_size=8",
    "trainer.max_epochs=3",
    "window=2",
    "prune.el2n_epochs=[1]",
    "prune.grand_epochs=[]",
    "prune.score_seeds=[0]",
]
# (name, command, overrides): every experiment config that runs on the embedded data
RUNS = [
    ("default", "run", ACTIVE),
    ("mulactseg_synthetic", "run", ACTIVE),
    ("adaptive_superpixel_synthetic", "run", [*ACTIVE, "sieve.min_pixels=8"]),
    # a whole image costs 8 clicks here: 8 would label one image, and DeepLabV3+'s pooling
    # branch cannot batch-normalise a batch of one
    ("image_labels_synthetic", "run", [*ACTIVE, "active.budget=24"]),
    ("ripu_synthetic", "run", ACTIVE),
    ("lamda_synthetic", "run", [*SHAPES, "adaptation.disc_hidden=[16]"]),
    ("image_labels_shapes", "run", SHAPES),
    *[
        (f"{m}_{d}_shapes", "run", DEBIAS)
        for m in ("erm", "groupdro", "jtt", "lff", "lwbc")
        for d in ("colored", "waterbird")
    ],
    ("prune_shapes", "prune score", [*PRUNE, "data.image_size=16", "regions.cell=16"]),
    ("prune_synthetic", "prune score", [*PRUNE, "data.image_size=32"]),
]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _arrays(path: Path) -> str:
    """npz contents, not its zip bytes."""
    with np.load(path) as z:
        return _digest(b"".join(k.encode() + np.ascontiguousarray(z[k]).tobytes() for k in z))


def _table(path: Path) -> str:
    import pandas as pd

    return _digest(pd.read_parquet(path).to_csv(index=False).encode())


def _json(path: Path, tmp: str) -> str:
    """A results file without its wall times and with the scratch folder's name masked."""

    def strip(v: object) -> object:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if "time" not in k and "second" not in k}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    text = json.dumps(strip(json.loads(path.read_text())), sort_keys=True)
    return _digest(text.replace(tmp, "<tmp>").encode())


def fingerprint(run_dir: Path, tmp: str) -> dict[str, str]:
    """What a run decided, file by file (``tmp``: the scratch folder, masked in texts)."""
    out: dict[str, str] = {}
    for p in sorted(run_dir.rglob("*")):
        rel = str(p.relative_to(run_dir))
        if not p.is_file() or rel.startswith(("checkpoints", "wandb", "cache")):
            continue
        if p.suffix == ".npz":
            out[rel] = _arrays(p)
        elif p.suffix == ".parquet":
            out[rel] = _table(p)
        elif p.name in ("metrics.csv",) or p.parent.name == "selections":
            out[rel] = _digest(p.read_bytes())
        elif p.name == "results.json":
            out[rel] = _json(p, tmp)
    return out


def run_all(only: list[str]) -> dict[str, dict[str, str]]:
    from rich.console import Console

    from alseg.cli import main

    torch.set_num_threads(1)
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="alseg-behaviour-") as tmp:
        for name, command, extra in RUNS:
            if only and name not in only:
                continue
            run_dir = Path(tmp) / name
            exp = [] if name == "default" else [f"experiment={name}"]
            args = [
                *command.split(),
                *exp,
                *extra,
                f"regions.cache_dir={tmp}/cache",
                f"debias.features.cache_dir={tmp}/features",
                "trainer.enable_progress_bar=false",
                "logger=none",
                f"run_dir={run_dir}",
            ]
            Console(stderr=True).log(f"{name}: alseg {' '.join(args)}")
            try:
                with io.StringIO() as sink, contextlib.redirect_stdout(sink):  # run tables
                    rc = main(args)
                results[name] = {"exit": str(rc), **fingerprint(run_dir, tmp)}
            except Exception as e:  # recorded: a crash is behaviour too
                results[name] = {"error": "".join(traceback.format_exception_only(e)).strip()}
    return results


def differences(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[str]:
    out = []
    for name in sorted(a.keys() | b.keys()):
        x, y = a.get(name, {}), b.get(name, {})
        for key in sorted(x.keys() | y.keys()):
            if x.get(key) != y.get(key):
                out.append(f"{name}/{key}: {x.get(key, '<absent>')} -> {y.get(key, '<absent>')}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where the fingerprints are written (JSON)")
    parser.add_argument("--against", type=Path, help="fingerprints of the old tree")
    parser.add_argument("--only", nargs="*", default=[], help="run only these configs")
    args = parser.parse_args()
    results = run_all(args.only)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    crashed = [n for n, r in results.items() if "error" in r]
    print(f"{len(results)} runs, {len(crashed)} crashed {crashed}; fingerprints: {args.out}")
    if args.against is None:
        return 0
    before = json.loads(args.against.read_text())
    if args.only:
        before = {k: v for k, v in before.items() if k in args.only}
    diff = differences(before, results)
    print("\n".join(diff) if diff else f"identical to {args.against}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
