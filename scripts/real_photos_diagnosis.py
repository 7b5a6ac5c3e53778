"""Why a strategy does or does not beat random (alseg.diagnose): per run and selecting round,
the selected regions' size, purity and classes against the unlabeled pool, and the selecting
model's error on them, its error ranking (Spearman of BvSB and error) and its calibration.

    python scripts/real_photos_diagnosis.py --out runs/real_photos/diagnosis RUN_DIR...

Needs the checkpoint of every selecting round (active.keep_checkpoints >= rounds, as
scripts/real_photos.sh runs). Writes diagnosis.csv (one row per run and round) and
diagnosis.md (mean over the runs of each setting, per round) into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from alseg.diagnose import diagnose_run

COLUMNS = {
    "model_mIoU": "model mIoU",
    "px_per_click": "px / click",
    "purity_sel": "purity sel %",
    "purity_pool": "purity pool %",
    "error_sel": "error sel %",
    "error_pool": "error pool %",
    "spearman_bvsb_error": "ρ(BvSB, error)",
    "ece_pool": "ECE pool %",
    "class_tv": "class TV",
    "rare_sel": "rare sel %",
    "rare_pool": "rare pool %",
}


def table(df: pd.DataFrame) -> str:
    """Markdown: mean over runs per setting and round."""
    mean = df.groupby(["setting", "round"])[list(COLUMNS)].mean().reset_index()
    lines = [
        "| setting | round | runs | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    runs = df.groupby(["setting", "round"])["run"].nunique()
    for _, r in mean.iterrows():
        cells = [f"{r[c]:.2f}" if c in ("spearman_bvsb_error", "class_tv") else f"{r[c]:.1f}"
                 for c in COLUMNS]  # fmt: skip
        n = runs[(r.setting, r["round"])]
        lines.append(f"| {r.setting} | {r['round']} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = []
    for d in args.run_dirs:
        rows += diagnose_run(d)
        print(f"{d}: done", flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "diagnosis.csv", index=False)
    text = table(df)
    (args.out / "diagnosis.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
