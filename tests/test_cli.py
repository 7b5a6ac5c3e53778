"""The `alseg` command: config errors name the key and the valid choices."""

from __future__ import annotations

import pytest
from helpers import tiny_overrides

from alseg.cli import main
from alseg.config import ConfigError, compose


def test_defaults_compose_and_documented_keys_exist():
    cfg = compose(
        [
            "seed=3",
            "run_dir=/tmp/x",
            "active.rounds=4",
            "active.budget=50",
            "active.strategy=classbal",
            "labeling=pixel",
            "data.num_train=20",
            "data.image_size=32",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.strategy=auto",
        ]
    )
    assert cfg.labeling.type == "pixel" and cfg.active.strategy == "classbal"
    assert cfg.model.encoder_weights is None  # never downloads by default


@pytest.mark.parametrize(
    "override,message",
    [
        ("active.budgett=3", "unknown config key 'active.budgett'"),
        ("labeling=multi", "Available options in 'labeling'"),
        (
            "active.strategy=best",
            "active.strategy='best' is not valid; choose one of: random, entropy",
        ),
        ("active.budget=-1", "active.budget=-1 must be > 0"),
        ("nonsense", "must look like key=value"),
    ],
)
def test_bad_overrides_fail_fast(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compose([override])


def test_cli_reports_errors_without_traceback(capsys, tmp_path):
    assert main(["run", "active.strategy=best"]) == 2
    err = capsys.readouterr().err
    assert "error: active.strategy='best' is not valid" in err and "Traceback" not in err
    assert main(["resume", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_run_and_summarize(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *tiny_overrides(tmp_path, "active.rounds=2", f"run_dir={out}")]) == 0
    assert (out / "metrics.csv").is_file()
    capsys.readouterr()
    assert main(["summarize", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| entropy / dominant | 1 |" in table and "round 1 (16 clicks)" in table  # folder "run"


def test_strategy_params_are_added_or_overridden_from_the_command_line():
    cfg = compose(["active.strategy=bvsb", "active.strategy_params.power=2.0"])
    assert cfg.active.strategy_params.power == 2.0
    cfg = compose(["experiment=mulactseg_synthetic", "active.strategy_params.delta=12"])
    assert cfg.active.strategy_params.delta == 12 and cfg.active.strategy_params.temperature == 0.1
    with pytest.raises(
        ConfigError, match="unknown parameter 'nonsense' of strategy 'entropy'; valid: temperature"
    ):
        compose(["active.strategy_params.nonsense=1"])


def test_console_lines_carry_no_source_file_column():
    import io

    from alseg.tracking import user_console

    console = user_console()
    console.file = io.StringIO()
    console.log("round 0/4 fit (12 images)")
    line = console.file.getvalue()
    assert "round 0/4 fit" in line and "test_cli.py" not in line and ".py:" not in line


def test_every_task_of_the_schema_is_registered_with_its_checks_and_names():
    from alseg.build import default_run_dir
    from alseg.config import TASK_CHECKS
    from alseg.schema import RootConfig
    from alseg.tasks import TASKS

    choices = RootConfig.__dataclass_fields__["task"].metadata["choices"]
    assert set(TASKS) == set(TASK_CHECKS) == set(choices)
    names = {
        "active": default_run_dir(compose(["active.strategy=bvsb", "seed=3"])).name,
        "debias": default_run_dir(compose(["experiment=jtt_colored_shapes"])).name,
        "prune": default_run_dir(compose(["experiment=prune_shapes", "prune.stage=score"])).name,
    }
    assert names["active"].startswith("bvsb-dominant-seed3-")
    assert names["debias"].startswith("jtt-colored_shapes-seed0-")
    assert names["prune"].startswith("prune-score-shapes-seed0-")
