"""W&B logging, offline: one run per experiment holding the round metrics, the selections
table and the labels artifact, with the same numbers as the run dir."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import closed_wandb_logs, tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose
from alseg.wandb_offline import artifacts, history


def test_offline_wandb_run_holds_metrics_table_and_artifact(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    cfg = compose(tiny_overrides(tmp_path, "active.rounds=2", "logger=wandb"))
    build_loop(cfg, out, resume=False, console=Console(quiet=True), progress=False).run()
    logs = closed_wandb_logs(out)
    assert len(logs) == 1  # all rounds in one W&B run
    state = json.loads((out / "state.json").read_text())
    assert state["wandb_id"] in logs[0].parent.name
    log = logs[0]

    rows = history(log)
    rounds = [r for r in rows if "al/mIoU" in r]
    with (out / "metrics.csv").open() as f:
        metrics = list(csv.DictReader(f))
    assert [r["al/round"] for r in rounds] == [0, 1]
    for logged, saved in zip(rounds, metrics):
        assert logged["al/mIoU"] == pytest.approx(float(saved["mIoU"]))
        assert logged["al/clicks"] == pytest.approx(float(saved["clicks"]))
        assert logged["al/IoU_road"] == pytest.approx(float(saved["IoU_road"]))

    tables = [r for r in rows if "selections/table/nrows" in r]  # nested keys are joined
    assert [t["selections/table/nrows"] for t in tables] == [8, 8]  # one row per query
    assert [t["selections/table/ncols"] for t in tables] == [6, 6]
    assert all(t["selections/overlays/count"] >= 1 for t in tables)

    arts = [a for a in artifacts(log) if a["type"] == "labels"]
    assert [a["metadata"]["round"] for a in arts] == [0, 1]
    assert "round-1" in arts[1]["aliases"]
    assert sorted(arts[0]["files"]) == ["round_00.csv", "round_00.npz"]
    assert arts[1]["metadata"]["clicks"] == pytest.approx(float(metrics[1]["clicks"]))


def test_wandb_gets_no_anonymous_setting(tmp_path, monkeypatch):
    """Lightning passes anonymous=None, on which W&B warns that the setting has no effect:
    a warning a user cannot act on, so the logger leaves the setting out."""
    pytest.importorskip("wandb")
    from alseg.build import build_logger
    from alseg.rundir import RunDir

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(tiny_overrides(tmp_path, "logger=wandb"))
    logger = build_logger(cfg, RunDir(tmp_path / "run"), {})
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["group"]


def _leveldb_log(records: list[bytes]) -> bytes:
    """The LevelDB log framing W&B writes, spelled out: 32 KiB blocks, a record split into
    FIRST/MIDDLE/LAST pieces where it crosses a block, a zero trailer under 7 bytes."""
    import struct
    import zlib

    out = bytearray(b":W&B\xe1\xbe\x00")
    for rec in records:
        rest, first = rec, True
        while True:
            left = 32768 - len(out) % 32768
            if left < 7:
                out += b"\0" * left
                continue
            piece, rest = rest[: left - 7], rest[left - 7 :]
            kind = (1 if not rest else 2) if first else (4 if not rest else 3)
            crc = zlib.crc32(piece, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
            out += struct.pack("<IHB", crc, len(piece), kind) + piece
            first = False
            if not rest:
                break
    return bytes(out)


def _history_record(step: int, text: str) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    for key, value in (("_step", step), ("note", text)):
        item = rec.history.item.add()
        item.nested_key.append(key)
        item.value_json = json.dumps(value)
    return rec.SerializeToString()


def test_reader_spans_blocks_and_keeps_the_complete_records_of_a_cut_or_damaged_log(tmp_path):
    """A log read while W&B still writes it (or left by a kill) ends inside a record: the
    reader returns the complete records before it, as LevelDB's reader does at a torn
    tail; a record whose checksum fails ends the log there too."""
    pytest.importorskip("wandb")
    records = [_history_record(0, "a"), _history_record(1, "b" * 70000), _history_record(2, "c")]
    data = _leveldb_log(records)
    path = tmp_path / "run.wandb"
    path.write_bytes(data)
    assert [r["_step"] for r in history(path)] == [0, 1, 2]
    assert history(path)[1]["note"] == "b" * 70000  # across three blocks
    end_of = [len(_leveldb_log(records[: i + 1])) for i in range(3)]
    for cut, steps in ((end_of[0] + 3, [0]), (end_of[0] + 40000, [0]), (end_of[2] - 1, [0, 1])):
        path.write_bytes(data[:cut])
        assert [r["_step"] for r in history(path)] == steps
    damaged = bytearray(data)
    damaged[end_of[1] + 9] ^= 0xFF  # inside the third record's payload
    path.write_bytes(bytes(damaged))
    assert [r["_step"] for r in history(path)] == [0, 1]
