"""Debiasing data sets read from disk (CelebA, Waterbirds, a folder with a groups table) and
``build_group_datasets``, which picks the data set of a ``data`` config section."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from alseg.data.datasets import DataError, _open
from alseg.debias.data import (
    SPLIT_IDS,
    SPLITS,
    ColoredShapes,
    GroupDataset,
    WaterbirdShapes,
    check_groups,
)
from alseg.schema.data import (
    CelebAData,
    GroupCommon,
    GroupFileData,
    GroupFolderData,
    GroupSyntheticData,
)


class FileGroups(GroupDataset):
    """Images on disk with a label and a bias value each, resized (shorter side) and
    centre-cropped to ``image_size``."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        biases: np.ndarray,
        class_names: Sequence[str],
        bias_names: Sequence[str],
        image_size: int,
        split: str,
        name: str,
    ) -> None:
        if not len(paths):
            raise DataError(f"{name}: the {split} split has no images")
        self.paths = list(paths)
        self.labels, self.biases = np.asarray(labels, np.int64), np.asarray(biases, np.int64)
        self.class_names, self.bias_names = tuple(class_names), tuple(bias_names)
        self.image_size, self.split, self.name = image_size, split, name

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for p, y, b in zip(self.paths, self.labels, self.biases):
            h.update(f"{p}|{y}|{b}\n".encode())
        return f"{self.name}-{self.split}-n{len(self)}-{self.image_size}px-{h.hexdigest()[:12]}"

    def image_uint8(self, index: int) -> np.ndarray:
        im = _open(self.paths[index]).convert("RGB")
        S = self.image_size
        w, h = im.size
        scale = S / min(w, h)
        im = im.resize(
            (max(S, round(w * scale)), max(S, round(h * scale))), Image.Resampling.BILINEAR
        )
        w, h = im.size
        left, top = (w - S) // 2, (h - S) // 2
        return np.asarray(im.crop((left, top, left + S, top + S)))


def _read_table(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if not rows:
        raise DataError(f"{path} is empty")
    return [c.strip() for c in rows[0]], [r for r in rows[1:] if r]


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise DataError(f"{path} has no column {name!r}; columns: {', '.join(header)}")
    return header.index(name)


class CelebAGroups(FileGroups):
    """CelebA in its official layout: ``list_attr_celeba.txt`` (a count line, the 40
    attribute names, then ``image.jpg`` and +-1 per attribute), ``list_eval_partition.txt``
    (``image.jpg 0|1|2`` = train|val|test) and ``img_align_celeba/``.

    Args:
        root: the CelebA folder.
        split: "train" | "val" | "test".
        target: the attribute to classify (e.g. Blond_Hair).
        bias: the spurious attribute (e.g. Male).
        image_size: side of the square crop.
    """

    def __init__(self, root: str | Path, split: str, target: str, bias: str, image_size: int):
        root = Path(root)
        attr_file = root / "list_attr_celeba.txt"
        if not attr_file.is_file():
            raise DataError(f"{attr_file}: file not found (the CelebA folder of data.root)")
        lines = attr_file.read_text().splitlines()
        names = lines[1].split()
        for what, a in (("data.target_attr", target), ("data.bias_attr", bias)):
            if a not in names:
                raise DataError(
                    f"{what}={a!r} is not a CelebA attribute; valid: {', '.join(names)}"
                )
        ti, bi = names.index(target), names.index(bias)
        attrs = {}
        for line in lines[2:]:
            parts = line.split()
            if parts:
                attrs[parts[0]] = (int(parts[1 + ti]) > 0, int(parts[1 + bi]) > 0)
        part_file = root / "list_eval_partition.txt"
        if not part_file.is_file():
            raise DataError(f"{part_file}: file not found")
        want = str(SPLIT_IDS[split])
        files = [
            p[0] for p in map(str.split, part_file.read_text().splitlines()) if p[1:] == [want]
        ]
        missing = [f for f in files if f not in attrs]
        if missing:
            raise DataError(f"{part_file}: {missing[0]} has no row in {attr_file}")
        super().__init__(
            [root / "img_align_celeba" / f for f in files],
            np.array([attrs[f][0] for f in files], np.int64),
            np.array([attrs[f][1] for f in files], np.int64),
            (f"not {target}", target),
            (f"not {bias}", bias),
            image_size,
            split,
            f"celeba-{target}-{bias}",
        )


class WaterbirdsGroups(FileGroups):
    """Waterbirds (``metadata.csv``: img_filename, y, split 0|1|2, place)."""

    def __init__(self, root: str | Path, split: str, image_size: int):
        root = Path(root)
        path = root / "metadata.csv"
        header, rows = _read_table(path)
        cols = [_column(header, c, path) for c in ("img_filename", "y", "split", "place")]
        want = str(SPLIT_IDS[split])
        rows = [r for r in rows if r[cols[2]].strip() == want]
        try:
            labels = np.array([int(r[cols[1]]) for r in rows], np.int64)
            biases = np.array([int(r[cols[3]]) for r in rows], np.int64)
        except ValueError as e:
            raise DataError(f"{path}: y and place must be 0 or 1 ({e})") from None
        super().__init__(
            [root / r[cols[0]] for r in rows],
            labels,
            biases,
            ("landbird", "waterbird"),
            ("land", "water"),
            image_size,
            split,
            "waterbirds",
        )


class GroupFolder(FileGroups):
    """Any ImageFolder (``<root>/<class>/<image>``) plus a CSV with the columns ``path``
    (relative to root), ``bias`` (any value; names sorted) and ``split`` (train|val|test)."""

    def __init__(self, root: str | Path, csv_file: str | Path, split: str, image_size: int):
        root, path = Path(root), Path(csv_file)
        path = path if path.is_absolute() else root / path
        header, rows = _read_table(path)
        pi, bi, si = (_column(header, c, path) for c in ("path", "bias", "split"))
        bad = sorted({r[si].strip() for r in rows} - set(SPLITS))
        if bad:
            raise DataError(f"{path}: split value {bad[0]!r} is not one of {', '.join(SPLITS)}")
        classes = sorted({Path(r[pi]).parts[0] for r in rows if len(Path(r[pi]).parts) > 1})
        flat = [r[pi] for r in rows if len(Path(r[pi]).parts) < 2]
        if flat:
            raise DataError(f"{path}: path {flat[0]!r} is not <class folder>/<image>")
        bias_names = sorted({r[bi].strip() for r in rows})
        rows = [r for r in rows if r[si].strip() == split]
        super().__init__(
            [root / r[pi] for r in rows],
            np.array([classes.index(Path(r[pi]).parts[0]) for r in rows], np.int64),
            np.array([bias_names.index(r[bi].strip()) for r in rows], np.int64),
            classes,
            bias_names,
            image_size,
            split,
            f"groupfolder-{root.name}",
        )


def build_group_datasets(d: GroupCommon) -> tuple[GroupDataset, GroupDataset, GroupDataset]:
    """(train, val, test) of a ``data`` config section of a debiasing data set."""
    name = d.name
    sets: list[GroupDataset]
    if isinstance(d, GroupSyntheticData):
        cls: type[ColoredShapes | WaterbirdShapes] = (
            ColoredShapes if name == "colored_shapes" else WaterbirdShapes
        )
        sizes = {"train": d.num_train, "val": d.num_val, "test": d.num_test}
        sets = [
            cls(s, sizes[s], d.image_size, d.seed, d.conflict_ratio if s == "train" else 0.0)
            for s in SPLITS
        ]
    elif isinstance(d, CelebAData):
        sets = [CelebAGroups(_root(d), s, d.target_attr, d.bias_attr, d.image_size) for s in SPLITS]
    elif isinstance(d, GroupFolderData):
        sets = [GroupFolder(_root(d), d.groups_csv, s, d.image_size) for s in SPLITS]
    elif isinstance(d, GroupFileData) and name == "waterbirds":
        sets = [WaterbirdsGroups(_root(d), s, d.image_size) for s in SPLITS]
    else:
        raise DataError(f"data.name={name!r} is not a data set with a bias attribute")
    for ds in sets[1:]:
        check_groups(ds, f"data.name={name} {ds.split} split")
    return sets[0], sets[1], sets[2]


def _root(d: GroupFileData) -> Path:
    if not d.root:
        raise DataError(f"data.root is not set: the folder of the {d.name} data set")
    root = Path(d.root)
    if not root.is_dir():
        raise DataError(f"data.root={d.root} is not a folder")
    return root
