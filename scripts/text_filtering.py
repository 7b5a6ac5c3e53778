"""Data filtering for language models on the embedded instruction set (alseg.text): for each
seed, every rule's scores once, then keep 10 / 30 / 50 % by each rule, fine-tune the same
initial model on the kept examples for the same steps, and evaluate on the clean test set
(response loss, exact match per skill), with the precision / recall of the removals.

    OMP_NUM_THREADS=1 python scripts/text_filtering.py --out runs/text_filtering

--per-skill adds each rule applied inside each skill (<rule>/skill). --from-runs DIR prints
the same tables from the run dirs of scripts/text_prune.sh (`alseg prune`). Resumable:
scores_seedN.parquet and each (seed, rule, keep) row of results.csv are kept, a
rerun computes only what is missing. Prints the tables (mean ± std over seeds, and each
rule's paired difference to random per seed) and writes them to OUT/tables.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from alseg.build import quiet_lightning
from alseg.study import paired_stats
from alseg.text.filtering import (
    PER_SKILL,
    RULES,
    TextStudy,
    keep,
    removal_quality,
    retrain,
    scores,
    setup,
)


def _mean_std(x: pd.Series, digits: int) -> str:
    if len(x) > 1:
        return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}"
    return f"{x.mean():.{digits}f}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def tables(res: pd.DataFrame) -> str:
    full = res[res.rule == "full"]
    sub = res[res.rule != "full"]
    keeps = sorted(sub.keep.unique())
    names = list(RULES) + [r + PER_SKILL for r in RULES]
    rules = [r for r in names if r in set(sub.rule)]
    head = ["rule"] + [f"keep {k:g}" for k in keeps]
    parts = [
        f"full data ({len(full)} seeds): test loss {_mean_std(full.test_loss, 3)}, "
        f"exact match {_mean_std(full.em_all, 1)} %\n"
    ]
    for metric, title, digits in (
        ("test_loss", "test loss (response tokens; lower is better)", 3),
        ("em_all", "exact match %", 1),
    ):
        rows = [
            [r] + [_mean_std(sub[(sub.rule == r) & (sub.keep == k)][metric], digits) for k in keeps]
            for r in rules
        ]
        parts.append(f"**{title}**, mean ± std over seeds\n\n" + _md(head, rows))
    base = sub[sub.rule == "random"].set_index(["seed", "keep"]).test_loss
    rows = []
    for r in rules[1:] if rules and rules[0] == "random" else rules:
        cells = [r]
        for k in keeps:
            g = sub[(sub.rule == r) & (sub.keep == k)].set_index(["seed", "keep"]).test_loss
            p = paired_stats((base.loc[g.index] - g).to_numpy())  # > 0: lower loss than random
            cells.append(
                f"{p.mean:+.3f} [{p.lo:+.3f}, {p.hi:+.3f}] ({p.min:+.3f}..{p.max:+.3f}), "
                f"{p.wins}/{p.n}"
            )
        rows.append(cells)
    parts.append(
        "**random's test loss minus the rule's** (> 0: the rule's kept set trains a better "
        "model), mean [bootstrap 95 % interval] (min..max), seeds won\n\n" + _md(head, rows)
    )
    cols = ["precision"] + [c for c in res.columns if c.startswith("recall_")]
    k0 = keeps[-1]
    rows = [
        [r] + [f"{sub[(sub.rule == r) & (sub.keep == k0)][c].mean():.1f}" for c in cols]
        for r in rules
    ]
    parts.append(
        f"**what the removals hit** at keep {k0:g}: precision = defective share of the "
        "removed, recall = removed share of each defect kind (%, mean over seeds)\n\n"
        + _md(["rule"] + [c.replace("recall_", "") for c in cols], rows)
    )
    return "\n".join(parts)


def from_runs(folder: Path) -> pd.DataFrame:
    """The rows of results.csv from the retrain run dirs of `alseg prune` under ``folder``
    (scripts/text_prune.sh): the full data as rule "full"."""
    import json

    from omegaconf import OmegaConf

    rows = []
    for res_path in sorted(folder.glob("*/results.json")):
        res = json.loads(res_path.read_text())
        if res.get("stage") != "retrain":
            continue
        seed = int(OmegaConf.load(res_path.parent / "config.yaml").seed)
        rule = "full" if res["keep"] == 1.0 else res["rule"]
        rows.append({"seed": seed, **res, "rule": rule})
    if not rows:
        raise SystemExit(f"no finished retrain run under {folder}")
    return pd.DataFrame(rows).drop(columns=["stage"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/text_filtering")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument(
        "--per-skill",
        action="store_true",
        help="also each rule but random applied inside each skill (<rule>/skill)",
    )
    ap.add_argument("--accelerator", default="cpu", help="the fits' device: cpu, gpu, auto")
    ap.add_argument("--precision", default="32-true", help="Lightning's, e.g. bf16-mixed")
    ap.add_argument(
        "--from-runs",
        type=Path,
        help="print the tables of the `alseg prune` run dirs in this folder "
        "(scripts/text_prune.sh) instead of running the study",
    )
    args = ap.parse_args()
    if args.from_runs is not None:
        text = tables(from_runs(args.from_runs))
        (args.from_runs / "tables.md").write_text(text)
        print(text)
        return
    quiet_lightning()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    res = pd.read_csv(path) if path.exists() else pd.DataFrame()
    done = set() if res.empty else set(zip(res.seed, res.rule, res.keep))
    study = TextStudy(accelerator=args.accelerator, precision=args.precision)
    for seed in args.seeds:
        t0 = time.perf_counter()
        s = setup(study, seed)
        spath = out / f"scores_seed{seed}.parquet"
        if spath.exists():
            df = pd.read_parquet(spath)
        else:
            df = scores(s, study, seed)
            df.to_parquet(spath)
            print(f"seed {seed}: scores in {time.perf_counter() - t0:.0f} s", flush=True)
        rules = list(args.rules)
        if args.per_skill:
            rules += [r + PER_SKILL for r in args.rules if r != "random"]
        todo = [("full", 1.0)] + [(r, k) for r in rules for k in args.keeps]
        for rule, k in todo:
            if (seed, rule, k) in done:
                continue
            kept = keep(df, rule, k) if rule != "full" else df.index.to_numpy()
            row = {"seed": seed, "rule": rule, "keep": k, "kept": len(kept)}
            row |= removal_quality(df, kept) | retrain(s, study, kept, seed)
            res = pd.concat([res, pd.DataFrame([row])], ignore_index=True)
            res.to_csv(path, index=False)
            loss, em = row["test_loss"], row["em_all"]
            print(f"seed {seed} {rule} keep {k:g}: loss {loss:.3f} em {em:.1f}", flush=True)
    text = tables(res)
    (out / "tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
