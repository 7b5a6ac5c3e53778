"""The README's "Add a strategy" example runs as written: its code block is executed and
a tiny experiment selects with the new strategy."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import tiny_overrides
from rich.console import Console

from alseg.acquisition.strategies import STRATEGIES
from alseg.build import build_loop
from alseg.config import compose


def readme_block(after: str) -> str:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    start = text.index(after)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_add_a_strategy_example_runs(tmp_path):
    code = readme_block("**Add a strategy.**")
    namespace: dict = {}  # what the block defines
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        assert "max_margin" in STRATEGIES
        cfg = compose(
            tiny_overrides(
                tmp_path,
                "active.strategy=max_margin",
                "active.strategy_params.temperature=0.5",
                "active.rounds=2",
            )
        )
        loop = build_loop(cfg, tmp_path / "run", False, Console(quiet=True), progress=False)
        rows = loop.run()
        assert [float(r["clicks"]) for r in rows] == [8.0, 16.0]
        # round 1 was taken by descending max-margin score, each a margin in [0, 1]
        import csv

        with (tmp_path / "run" / "selections" / "round_01.csv").open() as f:
            picked = [float(r["score"]) for r in csv.DictReader(f)]
        assert picked == sorted(picked, reverse=True) and 0 <= min(picked) <= max(picked) <= 1
    finally:
        STRATEGIES.pop("max_margin", None)
