"""``alseg export`` and ``alseg import``: a waiting round's queries out to Label Studio
(files to import by hand), people's answers back into the run.

An import commits every valid answer — to the LabelStore with its real click cost, to
the round's selections CSV and labels file — as one transaction of the run dir (all files
and state.json, or none; ``RunDir.transaction``), and names every answer it could not use
(task and region). Unanswered queries stay pending: import again with more answers; an
answer already imported is never paid twice. When no query is pending the round is
``labeled`` and ``alseg resume`` trains on it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alseg.data.labels import NO_CLASS
from alseg.human.labelstudio import VOID, Parsed, choice_names, label_config, parse_export, tasks
from alseg.human.queries import QueryRound, awaiting_round, load_queries, save_queries
from alseg.rundir import RunDir
from alseg.state import Phase


def _parts(run_dir: Path) -> Any:
    from alseg.config import load_run_config
    from alseg.parts import build_parts

    return build_parts(load_run_config(run_dir), progress=False)


def export_round(run_dir: Path, out: Path | None = None) -> tuple[Path, int]:
    """Write the pending queries of the waiting round as Label Studio tasks
    (``tasks.json``) and its labelling config (``label_config.xml``) into ``out``
    (default ``RUN_DIR/export/round_XX``); returns the folder and the number of tasks."""
    rundir = RunDir(run_dir)
    r = awaiting_round(rundir)
    q = load_queries(rundir, r)
    parts = _parts(run_dir)
    train, regions = parts.train, parts.regions

    def image(i: int) -> np.ndarray:
        x = train[i]["image"]  # (3, H, W) in [0, 1]
        return (x.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()

    items = tasks(q, image, lambda i: regions.map_tensor(i).numpy(), rundir.path.name)
    out = out or rundir.path / "export" / f"round_{r:02d}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tasks.json").write_text(json.dumps(items))
    (out / "label_config.xml").write_text(label_config(q))
    return out, len(items)


@dataclass
class ImportReport:
    round: int
    imported: int
    clicks: float
    pending: int
    parsed: Parsed

    def lines(self) -> list[str]:
        head = (
            f"round {self.round}: imported {self.imported} answers ({self.clicks:g} clicks); "
            f"{self.pending} queries pending"
        )
        return [
            head,
            *[f"error: {p}" for p in self.parsed.problems],
            *[f"note: {p}" for p in self.parsed.ignored],
        ]


def painted_path(run_dir: Path, r: int, image: int) -> Path:
    return Path(run_dir) / "answers" / f"round_{r:02d}" / f"{image:06d}.png"


def save_painted(rundir: RunDir, r: int, image: int, painted: np.ndarray) -> None:
    """Commit an image's painted pixel answers of round r (over an earlier import's)."""
    import io

    from PIL import Image

    path = painted_path(rundir.path, r, image)
    if path.is_file():
        old = np.asarray(Image.open(path))
        painted = np.where(painted != 255, painted, old).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(painted.astype(np.uint8)).save(buf, format="PNG")
    rundir.write_file(path, buf.getvalue())


class PaintedLabels:
    """``index -> (H, W)`` long: the pixel answers people painted for a pool image (all
    rounds, 255 where nothing was painted) — the ground truth that pixel-labeled regions
    train on when people answer."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "answers"

    def __call__(self, index: int) -> Any:
        import torch
        from PIL import Image

        paths = sorted(self.root.glob(f"round_*/{index:06d}.png"))
        if not paths:
            raise FileNotFoundError(f"no painted answers of image {index} under {self.root}")
        out = np.asarray(Image.open(paths[0])).copy()
        for p in paths[1:]:
            m = np.asarray(Image.open(p))
            out = np.where(m != 255, m, out)
        return torch.from_numpy(out.astype(np.int64))


def _given(q: QueryRound, ids: list[int], answers: dict[int, list[str]]) -> np.ndarray:
    """People's answers in the oracle's form: multi-hot rows, or class ids (dominant;
    pixel answers: no class, their pixels are the painted maps)."""
    names = choice_names(q)
    if q.label_type == "pixel":
        return np.full(len(ids), NO_CLASS, dtype=np.int64)
    if q.label_type == "dominant":
        return np.array(
            [NO_CLASS if answers[g][0] == VOID else names.index(answers[g][0]) for g in ids],
            dtype=np.int64,
        )
    bits = np.zeros((len(ids), len(names)), dtype=bool)
    for k, g in enumerate(ids):
        bits[k, [names.index(c) for c in answers[g]]] = True
    return bits


def _old_rows(rundir: RunDir, r: int) -> list[dict[str, Any]]:
    path = rundir.selections_path(r)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_export(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as JSON ({e})") from e


def project_file(run_dir: Path, r: int) -> Path:
    """Where ``alseg export --to label-studio`` notes the server and project of round r."""
    return Path(run_dir) / "export" / f"round_{r:02d}" / "project.json"


def upload_round(run_dir: Path, url: str, title: str | None = None) -> tuple[int, int]:
    """Export the waiting round to a Label Studio server: a project with the round's
    labelling config and one task per queried image; returns (project id, tasks)."""
    from alseg.human.server import LabelStudio

    folder, _ = export_round(run_dir)
    r = awaiting_round(RunDir(run_dir))
    ls = LabelStudio(url)
    name = title or f"alseg {Path(run_dir).resolve().name} round {r}"
    project = ls.create_project(name, (folder / "label_config.xml").read_text())
    n = ls.import_tasks(project, json.loads((folder / "tasks.json").read_text()))
    project_file(run_dir, r).write_text(json.dumps({"url": url, "project": project}))
    return project, n


def download_answers(run_dir: Path, url: str | None, project: int | None) -> Any:
    """The JSON export of the waiting round's project (by default the one
    ``upload_round`` created)."""
    from alseg.human.server import LabelStudio

    r = awaiting_round(RunDir(run_dir))
    if url is None or project is None:
        path = project_file(run_dir, r)
        if not path.is_file():
            raise ValueError(
                f"round {r} was not exported to a server (no {path}): give --url and --project"
            )
        saved = json.loads(path.read_text())
        url, project = url or saved["url"], project or int(saved["project"])
    assert url is not None and project is not None
    return LabelStudio(url).export(project)


def import_answers(run_dir: Path, export: Any) -> ImportReport:
    """Validate and commit the answers of a Label Studio JSON export (see module doc)."""
    rundir = RunDir(run_dir)
    r = awaiting_round(rundir)
    rundir.acquire_lock("import")
    try:
        state = rundir.read_state()
        q = load_queries(rundir, r)
        parts = _parts(run_dir)
        parsed = parse_export(export, q, lambda i: parts.regions.map_tensor(i).numpy())
        ids = sorted(parsed.answers)
        store = parts.store
        previous = rundir.labels_path(r) if rundir.labels_path(r).is_file() else None
        if previous is None and r > 0:
            previous = rundir.labels_path(r - 1)
        if previous is not None:
            store.load(previous)
        by_id = q.by_id()
        scores = np.array([by_id[g]["score"] for g in ids], dtype=np.float64)
        ann = parts.oracle.answers(
            np.array(ids, dtype=np.int64), _given(q, ids, parsed.answers), scores
        )
        if ids:
            store.add(ann, r)
            q.answered = sorted(set(q.answered) | set(ids))
        # one commit, as a round's: painted maps, selections, labels, queries and state.json
        # all land or none (a kill inside leaves the run dir as it was, or finished)
        state.phase = Phase.AWAITING_ANSWERS if q.pending else Phase.LABELED
        state.spent = store.spent()
        if ids:

            def painted_and_queries() -> None:
                for image, painted in parsed.painted.items():
                    save_painted(rundir, r, image, painted)
                save_queries(rundir, q)

            rows = _old_rows(rundir, r) + ann.records(parts.regions, list(q.classes))
            rundir.commit_round(r, rows, store.to_bytes(), state, also=painted_and_queries)
        else:  # nothing new answered: only the phase and spent clicks (one atomic file)
            rundir.write_state(state)
        return ImportReport(r, len(ids), float(ann.costs.sum()), len(q.pending), parsed)
    finally:
        rundir.release_lock()
