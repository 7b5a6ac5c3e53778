"""The score -> keep -> fine-tune protocol on text (skipped without the llm extra)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "transformers", reason='the llm extra is not installed (pip install -e ".[llm]")'
)
pytest.importorskip("peft", reason='the llm extra is not installed (pip install -e ".[llm]")')

from alseg.text.filtering import RULES, TextStudy, keep, removal_quality, retrain, scores, setup  # noqa: E402


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "defect": ["clean", "wrong", "clean", "garbled", "clean", "wrong"],
            "random": [0.1, 0.9, 0.5, 0.3, 0.8, 0.2],
            "ppl": [1.0, 6.0, 2.0, 9.0, 3.0, 5.0],
            "ifd": [0.9, 1.2, 0.5, 0.95, float("nan"), 0.7],
            "el2n": [0.1, 0.7, 0.2, 0.9, 0.3, 0.6],
            "semdedup": [0.0, 0.2, 0.99, 0.1, 0.5, 0.3],
            "less": [0.5, -0.2, 0.4, -0.9, 0.3, 0.1],
        }
    )


def test_keep_rules_by_hand():
    df = table()
    assert keep(df, "ppl_low", 0.5).tolist() == [0, 2, 4]
    assert keep(df, "ppl_high", 0.5).tolist() == [1, 3, 5]
    assert keep(df, "ppl_middle", 0.34).tolist() == [4, 5]  # ascending 0,2,4,5,1,3: the middle two
    assert keep(df, "ifd", 0.5).tolist() == [0, 3, 5]  # IFD > 1 (1) and NaN (4) never kept
    assert keep(df, "ifd", 1.0).tolist() == [0, 2, 3, 5]  # only four survive
    assert keep(df, "semdedup", 0.5).tolist() == [0, 1, 3]  # the least duplicated
    assert keep(df, "less", 0.5).tolist() == [0, 2, 4]
    assert keep(df, "el2n", 0.5).tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="rule='best' is not valid; choose one of: random"):
        keep(df, "best", 0.5)


def test_per_skill_rules_keep_the_share_inside_each_skill():
    df = table().assign(skill=["a", "a", "a", "b", "b", "b"])
    # ppl inside a: 1, 6, 2 -> lowest 2 of 3 = rows 0, 2; inside b: 9, 3, 5 -> rows 4, 5
    assert keep(df, "ppl_low/skill", 0.6).tolist() == [0, 2, 4, 5]
    assert keep(df, "ppl_low", 0.6).tolist() == [0, 2, 4, 5]  # here the same by chance
    assert keep(df, "el2n/skill", 0.34).tolist() == [1, 3]  # the hardest of each skill
    assert keep(df, "el2n", 0.34).tolist() == [1, 3]
    assert keep(df, "less/skill", 0.34).tolist() == [0, 4]  # not the global top two (0, 2)
    assert keep(df, "less", 0.34).tolist() == [0, 2]


def test_removal_quality_by_hand():
    q = removal_quality(table(), np.array([0, 2, 4]))  # removes exactly the 3 defective
    assert q["precision"] == 100.0 and q["recall_wrong"] == 100.0 and q["recall_garbled"] == 100.0
    assert np.isnan(q["recall_truncated"])  # no truncated example in the table
    q = removal_quality(table(), np.array([1, 3, 5]))
    assert q["precision"] == 0.0 and q["recall_wrong"] == 0.0


def test_the_protocol_runs_end_to_end_on_a_tiny_study():
    study = TextStudy(
        n=60,
        steps=4,
        ref_steps=4,
        el2n_steps=2,
        test=2,
        trusted=2,
        target=2,
        less_epochs=1,
        less_warmup=0.1,
        clusters=3,
        less_dim=16,
    )
    s = setup(study, 0)
    df = scores(s, study, 0)
    assert len(df) == 60 and set(RULES[r][0] for r in RULES) <= set(df.columns)
    assert np.isfinite(df[["ppl", "el2n", "semdedup", "less"]].to_numpy()).all()
    assert (df.ppl > 1).all() and ((df.semdedup >= -1) & (df.semdedup <= 1 + 1e-6)).all()
    kept = keep(df, "less", 0.5)
    assert len(kept) == 30
    res = retrain(s, study, kept, 0)
    assert res["test_loss"] > 0 and 0 <= res["em_all"] <= 100
    assert set(res) >= {"em_add", "em_sort", "em_reverse", "em_count", "em_lookup", "em_convert"}
