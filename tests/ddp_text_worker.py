"""One rank of a DDP scoring run on instruction data (tests/test_ddp_strategies.py).

Runs ``alseg prune score experiment=prune_text`` with the given overrides in this process
and writes what this rank holds — every example's scores, and one sharded, gathered pass
of the initial model over the training set — to ``<run_dir>/../text.rank<RANK>.json``.

    python tests/ddp_text_worker.py RUN_DIR key=value ...   (with RANK, WORLD_SIZE set)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console

from alseg.config import compose
from alseg.distributed import world_size
from alseg.text.lm import example_scores
from alseg.text.run import TextPruneRun


def main() -> None:
    run_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
    run = TextPruneRun(compose(overrides), run_dir, Console(quiet=True))
    prepare = run.prepare
    held = []
    run.prepare = lambda: held.append(prepare()) or held[0]  # type: ignore[method-assign]
    run.run()
    s = held[0]
    initial = example_scores(s.init, s.enc)  # the process group is up: sharded and gathered
    record = {
        "world": world_size(),  # 2: the pass above was shared out
        "scores": run.scores.drop(columns=["skill", "defect", "example", "class"]).to_dict("list"),
        "initial": {k: v.tolist() for k, v in initial.items()},
    }
    rank = os.environ["RANK"]
    (run_dir.parent / f"text.rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
