"""One rank of a DDP run started the way torchrun starts it (tests/test_ddp_strategies.py).

Runs ``alseg run`` with the given overrides in this process and, after every commit,
records what this rank holds: a digest of its LabelStore, of the source-sampling weights
(LAMDA's label matching) and the sieve folders its targets read. Writes them as JSON to
``<run_dir>/../digest.rank<RANK>.json``.

    python tests/ddp_worker.py RUN_DIR key=value ...   (with RANK, WORLD_SIZE, ... set)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> None:
    run_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
    loop = build_loop(compose(overrides), run_dir, False, Console(quiet=True), progress=False)
    records: list[dict] = []
    commit = loop.commit

    def recorded(r: int, ann) -> None:
        commit(r, ann)
        weights = loop.dm.source_weights
        records.append(
            {
                "round": r,
                "labels": digest(loop.store.to_bytes()),
                "source_weights": None if weights is None else digest(weights.tobytes()),
                "sieves": [
                    p.name for p in getattr(loop.dm.labeled.steps.get("sieve"), "folders", ())
                ],
            }
        )

    loop.commit = recorded  # type: ignore[method-assign]
    loop.run()
    rank = os.environ["RANK"]
    (run_dir.parent / f"digest.rank{rank}.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
