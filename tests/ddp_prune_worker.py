"""One rank of a DDP pruning scoring run (tests/test_ddp_strategies.py).

Runs ``alseg prune score`` with the given overrides in this process and writes what this
rank recorded — the per-epoch training dynamics and the EL2N pass of the last epoch — and
the EL2N of every image recomputed here, in one process, with the final model, to
``<run_dir>/../prune.rank<RANK>.json``.

    python tests/ddp_prune_worker.py RUN_DIR key=value ...   (with RANK, WORLD_SIZE set)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from rich.console import Console

from alseg.config import compose
from alseg.prune.callbacks import EpochScores, TrainingDynamics
from alseg.prune.run import PruneRun
from alseg.prune.scores import pixel_statistics


def main() -> None:
    run_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
    run = PruneRun(compose(overrides), run_dir, Console(quiet=True))
    seen: list = []
    fit = run.fit

    def recording(parts, seed, callbacks, max_steps=None):  # type: ignore[no-untyped-def]
        seen.append((parts, callbacks))
        return fit(parts, seed, callbacks, max_steps)

    run.fit = recording  # type: ignore[method-assign]
    run.run()
    parts, callbacks = seen[-1]
    dynamics = next(c for c in callbacks if isinstance(c, TrainingDynamics))
    epochs = next(c for c in callbacks if isinstance(c, EpochScores))
    model = run.model.eval()
    local = []
    with torch.no_grad():
        for i in range(len(parts.train)):
            item = parts.train[i]
            logits = model(item["image"][None])[:, : model.num_classes]
            local.append(pixel_statistics(logits, item["mask"][None], 255)["el2n"].item())
    record = {
        "dynamics": {k: [r.tolist() for r in v] for k, v in dynamics.epochs.items()},
        "el2n": epochs.values["el2n"][-1].tolist(),
        "local_el2n": local,
    }
    rank = os.environ["RANK"]
    (run_dir.parent / f"prune.rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
