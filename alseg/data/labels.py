"""LabelStore: which region was labeled in which round, with what answer, at what cost.

Memory is O(regions), never O(pixels): for ``pixel`` labels the store keeps a reference
(the label type) and the pixels are read from the annotator's answer source when
targets are built. 3,000 images x 8,192 regions take about 24M regions x 8 bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alseg.atomic import atomic_write_bytes, buffered

LABEL_TYPES: tuple[str, ...] = ("dominant", "pixel", "multiclass")
# Codes stored per region; kept stable because they are written to .npz files.
_KIND_CODE = {"none": 0, "dominant": 1, "pixel": 2, "multiclass": 3}
DENSE = -1  # region_targets(): the region's own pixels are the label (pixel labels)
MULTI = -2  # region_targets(): a set of two or more classes (multiclass labels)
NO_CLASS = 255  # "no usable class" (e.g. a void-majority region under dominant labeling)
_FORMAT_VERSION = 2  # 2: + query (merged-region queries); version-1 files still load


@dataclass
class Annotations:
    """Answers of the annotator for a batch of queried regions.

    Attributes:
        region_ids: (K,) int64 global region ids, unique.
        label_type: the label type that was asked.
        classes: (K,) int64 dominant class, or NO_CLASS (255) when the region has no
            usable class (void majority) or the label is dense (``pixel``).
        costs: (K,) float64 click cost of each answer.
        scores: (K,) float64 acquisition score at selection time (for the record).
        bits: (K, B) bool multi-hot answers of ``multiclass`` queries: B = C classes, or
            C + 1 with the void bit last; None for other label types. ``classes`` then
            holds the class of one-hot answers and NO_CLASS otherwise.
        predicted: (K,) the scoring model's majority predicted class of each region
            (for the record; None when the strategy used no model).
        query: (K,) global id of the query each region was labeled by (merged regions:
            the root base region; one query labels all its base regions and its cost sits on
            the root's row); None when every region is its own query.
    """

    region_ids: np.ndarray
    label_type: str
    classes: np.ndarray
    costs: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bits: np.ndarray | None = None
    predicted: np.ndarray | None = None  # (K,) model's majority class of each region, if scored
    query: np.ndarray | None = None  # (K,) global id of the query that labeled each region

    def __post_init__(self) -> None:
        self.region_ids = np.asarray(self.region_ids, dtype=np.int64)
        k = self.region_ids.size
        self.classes = np.asarray(self.classes, dtype=np.int64)
        self.costs = np.asarray(self.costs, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64) if len(self.scores) else np.zeros(k)
        if not (self.classes.shape == self.costs.shape == self.scores.shape == (k,)):
            raise ValueError(
                "Annotations: region_ids, classes, costs, scores must have equal length"
            )
        if self.label_type not in LABEL_TYPES:
            raise ValueError(f"label_type={self.label_type!r}; valid: {list(LABEL_TYPES)}")
        if (self.bits is not None) != (self.label_type == "multiclass"):
            raise ValueError("Annotations: bits are given exactly for multiclass answers")
        if self.bits is not None:
            self.bits = np.asarray(self.bits, dtype=bool)
            if self.bits.ndim != 2 or self.bits.shape[0] != k:
                self.bits = self.bits.reshape(k, -1)

    def __len__(self) -> int:
        return int(self.region_ids.size)

    @property
    def total_cost(self) -> float:
        return float(self.costs.sum())

    def describe(self, names: Sequence[str]) -> list[str]:
        """Readable answers: a class name, "void" (no usable class), "pixels", or the
        classes of a multi-class answer joined by "|"."""
        if self.label_type == "pixel":
            return ["pixels"] * len(self)
        if self.bits is not None:
            labels = [*names, "void"]
            return ["|".join(labels[c] for c in np.flatnonzero(b)) or "none" for b in self.bits]
        return [names[k] if k != NO_CLASS else "void" for k in self.classes]

    def records(self, regions: Any, names: Sequence[str]) -> list[dict[str, Any]]:
        """One row per answered region (selections CSV, W&B table): image, region, score,
        cost, readable answer, predicted class; ``query`` (the root region) for merged
        regions. ``regions``: the pool's ``RegionSet``."""
        images, local = regions.split_ids(self.region_ids)
        pred = self.predicted if self.predicted is not None else np.full(len(self), -1)
        rows = [
            {
                "image": int(i),
                "region": int(r),
                "score": f"{s:.6g}",
                "cost": f"{c:g}",
                "answer": a,
                "predicted": names[p] if 0 <= p < len(names) else "",
            }
            for i, r, s, c, a, p in zip(
                images, local, self.scores, self.costs, self.describe(names), pred
            )
        ]
        if self.query is not None:  # merged regions: the root (local id) of each row's query
            for row, q in zip(rows, regions.split_ids(self.query)[1]):
                row["query"] = int(q)
        return rows


class LabelStore:
    """Per-region labels of one pool.

    Args:
        num_regions: total number of regions in the pool (global ids 0..num_regions-1).
        num_classes: number of classes (answers must be < num_classes or NO_CLASS).

    Multi-class answers are kept as a packed bit field (R, ceil((C + 1) / 8)) uint8,
    allocated at the first multi-class answer: 3 bytes per region for Cityscapes.
    """

    def __init__(self, num_regions: int, num_classes: int) -> None:
        if num_regions < 0 or num_classes < 1:
            raise ValueError(f"num_regions={num_regions}, num_classes={num_classes} are invalid")
        self.num_regions, self.num_classes = int(num_regions), int(num_classes)
        self.round = np.full(num_regions, -1, dtype=np.int16)  # round labeled in, -1 = never
        self.kind = np.zeros(num_regions, dtype=np.uint8)  # _KIND_CODE
        self.cls = np.full(num_regions, NO_CLASS, dtype=np.uint8)  # dominant class
        self.cost = np.zeros(num_regions, dtype=np.float32)
        # root of a merged query (-1: its own); int32 while global ids fit (4 bytes a region)
        self.query_dtype = np.int32 if num_regions < 2**31 else np.int64
        self.query = np.full(num_regions, -1, dtype=self.query_dtype)
        self.bits: np.ndarray | None = None  # (R, nbytes) packed multi-hot answers

    @property
    def num_bits(self) -> int:
        """Bits per answer: C classes + the void bit."""
        return self.num_classes + 1

    # -- updates -----------------------------------------------------------------------
    def add(self, annotations: Annotations, round_index: int) -> None:
        """Record answers as labeled in round ``round_index``. Raises if any region is
        already labeled."""
        ids = annotations.region_ids
        if ids.size == 0:
            return
        if ids.min() < 0 or ids.max() >= self.num_regions:
            raise ValueError(f"region ids out of range [0, {self.num_regions})")
        if np.unique(ids).size != ids.size:
            raise ValueError("annotations contain the same region twice")
        again = ids[self.round[ids] >= 0]
        if again.size:
            raise ValueError(
                f"regions already labeled cannot be labeled again: {again[:10].tolist()}"
            )
        bad = (annotations.classes >= self.num_classes) & (annotations.classes != NO_CLASS)
        if bad.any():
            raise ValueError(f"answer classes must be < {self.num_classes} or {NO_CLASS}")
        if annotations.bits is not None:
            b = annotations.bits
            if b.shape[1] not in (self.num_classes, self.num_bits):
                raise ValueError(
                    f"multi-hot answers have {b.shape[1]} bits; "
                    f"expected {self.num_classes} or {self.num_bits}"
                )
            full = np.zeros((ids.size, self.num_bits), dtype=bool)
            full[:, : b.shape[1]] = b
            if self.bits is None:
                self.bits = np.zeros((self.num_regions, (self.num_bits + 7) // 8), dtype=np.uint8)
            self.bits[ids] = np.packbits(full, axis=1)
        self.round[ids] = round_index
        self.kind[ids] = _KIND_CODE[annotations.label_type]
        self.cls[ids] = annotations.classes.astype(np.uint8)
        self.cost[ids] = annotations.costs.astype(np.float32)
        if annotations.query is not None:
            self.query[ids] = annotations.query

    # -- queries -----------------------------------------------------------------------
    def labeled_mask(self) -> np.ndarray:
        """(num_regions,) bool, True where a region has been labeled (paid for)."""
        return self.round >= 0

    def mean_cost(self) -> float | None:
        """The mean click cost of a labeled region (None when none is labeled)."""
        paid = self.cost[self.round >= 0]
        return float(paid.mean()) if paid.size else None

    def spent(self, round_index: int | None = None) -> float:
        """Total click cost paid, or the cost paid in one round."""
        sel = self.round >= 0 if round_index is None else self.round == round_index
        return float(self.cost[sel].sum(dtype=np.float64))

    def region_targets(self, void_class: int | None = None) -> np.ndarray:
        """(num_regions,) int64 per-region training class: the dominant (or one-hot
        multi-class) answer, DENSE (-1) for ``pixel`` labels, MULTI (-2) for answers of two
        or more classes, NO_CLASS for unlabeled or unusable regions. With ``void_class``
        (a model with a void output), an answer of the void bit alone trains that output,
        as any other one-hot answer."""
        out = self.cls.astype(np.int64)
        out[self.kind == _KIND_CODE["pixel"]] = DENSE
        if self.bits is not None:
            multi = (self.kind == _KIND_CODE["multiclass"]) & (self.cls == NO_CLASS)
            bits = np.unpackbits(self.bits[multi], axis=1, count=self.num_bits)
            idx = np.flatnonzero(multi)
            counts = bits.sum(1)
            out[idx[counts >= 2]] = MULTI
            if void_class is not None:
                out[idx[(counts == 1) & (bits[:, -1] == 1)]] = void_class
        out[self.round < 0] = NO_CLASS
        return out

    def class_sets(self, region_ids: np.ndarray, void_bit: bool = False) -> np.ndarray:
        """(K, C) bool set of classes each region is known to contain: the multi-class
        answer, or the dominant class; empty for unlabeled and pixel-labeled regions.
        ``void_bit``: (K, C + 1), the void bit of multi-class answers last."""
        ids = np.asarray(region_ids, dtype=np.int64)
        out = self.answer_bits(ids)[:, : self.num_classes + int(void_bit)].copy()
        cls = self.cls[ids].astype(np.int64)
        one = (self.round[ids] >= 0) & (cls < self.num_classes)
        out[np.flatnonzero(one), cls[one]] = True
        return out

    def answer_bits(self, region_ids: np.ndarray) -> np.ndarray:
        """(K, C + 1) bool multi-hot answers (all False for regions without one)."""
        ids = np.asarray(region_ids, dtype=np.int64)
        if self.bits is None:
            return np.zeros((ids.size, self.num_bits), dtype=bool)
        return np.unpackbits(self.bits[ids], axis=1, count=self.num_bits).astype(bool)

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "version": np.array(_FORMAT_VERSION),
            "num_classes": np.array(self.num_classes),
            "round": self.round.copy(),
            "kind": self.kind.copy(),
            "cls": self.cls.copy(),
            "cost": self.cost.copy(),
            "query": self.query.copy(),
            **({"bits": self.bits.copy()} if self.bits is not None else {}),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        missing = {"round", "kind", "cls", "cost", "num_classes"} - set(state)
        if missing:
            raise ValueError(f"label state lacks {sorted(missing)}")
        if state["round"].shape != (self.num_regions,):
            raise ValueError(
                f"label state has {state['round'].shape[0]} regions, "
                f"this pool has {self.num_regions}"
            )
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"label state has {int(state['num_classes'])} classes, expected {self.num_classes}"
            )
        self.round = state["round"].astype(np.int16)
        self.kind = state["kind"].astype(np.uint8)
        self.cls = state["cls"].astype(np.uint8)
        self.cost = state["cost"].astype(np.float32)
        q = state.get("query")  # version-1 files have none: every region was its own query
        q = q if q is not None else np.full(self.num_regions, -1)
        self.query = q.astype(self.query_dtype)
        self.bits = state["bits"].astype(np.uint8) if "bits" in state else None

    def save(self, path: str | Path) -> None:
        """Write a compressed .npz atomically (temp file + rename): a crash never leaves a
        half-written file under ``path``."""
        atomic_write_bytes(Path(path), self.to_bytes())

    def to_bytes(self) -> bytes:
        """The compressed .npz file content of ``state_dict()``."""
        state = self.state_dict()
        return buffered(lambda f: np.savez_compressed(f, **state))  # type: ignore[arg-type]

    def load(self, path: str | Path) -> None:
        """Load a file written by ``save``; a corrupt or foreign file raises ValueError
        naming it, and leaves this store unchanged."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                state = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(
                f"label file {path} is corrupt or not an alseg label file ({e})"
            ) from e
        try:
            self.load_state_dict(state)
        except ValueError as e:
            raise ValueError(f"label file {path}: {e}") from e

    @classmethod
    def from_file(cls, path: str | Path, num_regions: int, num_classes: int) -> LabelStore:
        store = cls(num_regions, num_classes)
        store.load(path)
        return store
