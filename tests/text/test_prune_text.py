"""``alseg prune score|retrain`` on instruction data (experiment=prune_text; skipped without
the llm extra): the run dir, the kept set against the scores, the removals' precision
against the defects, the report, a loaded JSONL file and a saved model, and bad input
refused before a run dir is made."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "transformers", reason='the llm extra is not installed (pip install -e ".[llm]")'
)
pytest.importorskip("peft", reason='the llm extra is not installed (pip install -e ".[llm]")')

from alseg.cli import main  # noqa: E402
from alseg.config import ConfigError, compose  # noqa: E402
from alseg.text.filtering import keep as keep_rule  # noqa: E402

TINY = [
    "experiment=prune_text",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "data.n=60",
    "data.trusted=2",
    "data.target=2",
    "data.test=2",
    "text.steps=4",
    "text.ref_steps=4",
    "text.el2n_steps=2",
    "text.less_epochs=1",
    "text.less_warmup=0.1",
    "text.clusters=3",
    "text.less_dim=16",
]


def test_score_then_retrain_on_the_embedded_set(tmp_path):
    score = tmp_path / "score"
    assert main(["prune", "score", *TINY, f"run_dir={score}"]) == 0
    df = pd.read_parquet(score / "scores.parquet")
    assert df["index"].tolist() == list(range(60))
    assert (df["class"] == df["skill"]).all()
    assert {"random", "ppl", "ifd", "el2n", "semdedup", "less", "defect", "example"} <= set(df)
    # the embedded set's defects at their exact rates: 0.1 x 60 wrong, 0.05 x 60 garbled
    assert (df.defect == "wrong").sum() == 6 and (df.defect == "garbled").sum() == 3
    res = json.loads((score / "results.json").read_text())
    assert res["stage"] == "score" and res["examples"] == 60 and res["defects"]["wrong"] == 6
    assert '"done"' in (score / "state.json").read_text()

    runs = []
    for rule, keep in (("ifd", 0.5), ("ppl_low/skill", 0.5), ("random", 1.0)):
        out = tmp_path / rule.replace("/", "-")
        args = ["prune", "retrain", *TINY, f"scores={score}", f"rule={rule}", f"keep={keep}"]
        assert main([*args, f"run_dir={out}"]) == 0
        kept = json.loads((out / "kept.json").read_text())["kept"]
        assert kept == keep_rule(df, rule, keep).tolist()
        row = pd.read_csv(out / "metrics.csv").iloc[0]
        removed = np.setdiff1d(np.arange(60), kept)
        if len(removed):  # precision: the defective share of the removed examples
            expected = 100 * (df.defect[removed] != "clean").mean()
            assert row.precision == pytest.approx(expected)
            wrong = df.index[df.defect == "wrong"]
            assert row.recall_wrong == pytest.approx(100 * np.isin(wrong, removed).mean())
        assert row.kept == len(kept) and row.test_loss > 0 and 0 <= row.em_all <= 100
        runs.append(str(out))
    assert main(["report", str(score), *runs, "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text()
    assert "test loss of the responses" in table and "| ppl_low/skill |" in table
    assert "| full data (100 %) |" in table and "| ifd |" in table


def test_scores_of_another_seed_are_refused_before_a_run_dir(tmp_path, capsys):
    score = tmp_path / "score"
    assert main(["prune", "score", *TINY, "text.less_epochs=1", f"run_dir={score}"]) == 0
    out = tmp_path / "retrain"
    args = ["prune", "retrain", *TINY, f"scores={score}", "rule=less", "keep=0.5", "seed=1"]
    assert main([*args, f"run_dir={out}"]) == 2
    assert "scores other data than this run's (60 examples there, 60 here, 60 differ)" in (
        capsys.readouterr().err
    )
    assert not out.exists()
    # the data's own seed fixes the data: seed 1 on data.seed=0 reads seed 0's scores' data
    assert main([*args, "data.seed=0", "text.steps=1", f"run_dir={out}"]) == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["experiment=prune_text", "task=active"], "data=instructions (instruction data) runs"),
        (
            [
                "experiment=prune_text",
                "prune.stage=retrain",
                "prune.rule=hardest",
                "prune.scores=x",
            ],
            "prune.rule=hardest is not a rule of instruction data; choose one of: ppl_low",
        ),
        (
            ["experiment=prune_shapes", "prune.stage=retrain", "prune.rule=ifd"],
            "prune.rule=ifd is not a rule of data=shapes (images); choose one of: hardest",
        ),
        (["experiment=prune_text", "prune.stage=retrain"], "needs prune.scores"),
        (["experiment=prune_text", "trainer.strategy=fsdp"], "trainer.strategy=fsdp cannot"),
        (["experiment=prune_text", "data.rates.wrong=1.5"], "data.rates.wrong=1.5 must be <= 1"),
    ],
)
def test_bad_text_configs_are_named(overrides, message):
    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        compose(overrides)


def test_a_loaded_jsonl_file_and_a_saved_model(tmp_path):
    """data=hf_instructions reads a JSONL file (skills from a field; test, trusted and target
    held out per skill), text.name_or_path a saved model and tokenizer; the defects of a
    file are unknown, so the removals' precision is not computed."""
    from alseg.text.lm import ALONE, PROMPT, tiny_lm, train_tokenizer

    rows = [
        {"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b), "kind": "add"}
        for a in range(10, 22)
        for b in (3, 4)
    ] + [
        {"instruction": "Reverse the word:", "input": w, "output": w[::-1], "kind": "reverse"}
        for w in ("cat", "dog", "bird", "fish", "lion", "wolf", "bear", "deer", "frog", "mole")
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [PROMPT.format(instruction=r["instruction"]) + r["output"] for r in rows]
    tok = train_tokenizer(texts + [ALONE], vocab_size=200)
    model_dir = tmp_path / "model"
    tiny_lm(len(tok), 64, 16, 1, 2).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    data = [
        "data=hf_instructions",
        f"data.source={path}",
        "data.fields.skill=kind",
        "data.test=2",
        "data.trusted=2",
        "data.target=1",
        f"text.name_or_path={model_dir}",
    ]
    score = tmp_path / "score"
    assert main(["prune", "score", *TINY, *data, f"run_dir={score}"]) == 0
    df = pd.read_parquet(score / "scores.parquet")
    assert len(df) == 24 - 5 + 10 - 5  # per skill: 2 test + 2 trusted + 1 target held out
    assert sorted(df.skill.unique()) == ["add", "reverse"] and (df.defect == "unknown").all()
    out = tmp_path / "retrain"
    args = ["prune", "retrain", *TINY, *data, f"scores={score}", "rule=semdedup", "keep=0.5"]
    assert main([*args, f"run_dir={out}"]) == 0
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    assert row.kept == 12 and np.isnan(row.precision) and row.test_loss > 0
    assert set(json.loads((out / "results.json").read_text())) >= {"em_add", "em_reverse"}


def test_a_missing_llm_package_is_named_before_a_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if the extra lacked it
    out = tmp_path / "score"
    assert main(["prune", "score", *TINY, f"run_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "peft is missing: the language-model part of alseg needs the llm extra" in err
    assert not out.exists()
