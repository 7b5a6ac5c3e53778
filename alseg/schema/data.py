"""The schema of the ``data`` section: one dataclass per ``data.name`` (``DATA_SCHEMAS``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alseg.schema.field_meta import choices as _choices
from alseg.schema.field_meta import opt as _opt
from alseg.schema.field_meta import req as _req


@dataclass
class DataCommon:
    name: str = _req()
    domain: str = _req(**_choices("source", "target"))
    seed: int = _req(ge=0)
    image_size: Any = _req(image_size=True)  # int (shorter side) | [h, w] | null (native)
    batch_size: int = _req(ge=1)
    pool_batch_size: int = _req(ge=1)
    num_workers: int = _req(ge=0)
    hflip: bool = _req()
    scale_range: list[float] | None = _opt(length=2, item_gt=0)
    crop_size: list[int] | None = _opt(length=2, item_ge=1)
    image_weights: str | None = _opt()  # a weights.parquet: sample labeled images by weight


@dataclass
class SyntheticData(DataCommon):
    label_shift: float = _req(ge=0, le=1)
    num_source: int = _req(ge=1)
    num_train: int = _req(ge=1)
    num_val: int = _req(ge=1)
    num_test: int = _req(ge=1)


@dataclass
class ShapesData(DataCommon):
    imbalance: float = _req(ge=0, lt=1)
    gap: float = _opt(1.0, ge=0, le=1)
    segmentation: bool = _opt(False)
    num_source: int = _req(ge=1)
    num_train: int = _req(ge=1)
    num_val: int = _req(ge=1)
    num_test: int = _req(ge=1)


@dataclass
class FileData(DataCommon):
    root: str | None = _opt()
    resize: str = _opt("stretch", **_choices("stretch", "crop"))  # how image_size=[h, w] is met
    cache: bool = _opt(False)  # keep decoded images and masks in memory (downsized sets)
    train_split: str = _req()
    val_split: str = _req()
    val_holdout: int = _req(ge=1)
    test_split: str = _req()
    max_images: int | None = _opt(ge=1)


@dataclass
class PairData(FileData):
    source_root: str | None = _opt()
    source_split: str = _req()


@dataclass
class FolderLists:
    train: str | None = None
    val: str | None = None
    test: str | None = None


@dataclass
class FolderData(FileData):
    num_classes: int | None = _opt(ge=2)
    class_names: list[str] | None = _opt()
    ignore_index: int = _req(ge=0, le=255)
    id_map: dict[int, int] | None = _opt()
    lists: FolderLists = field(default_factory=FolderLists)


@dataclass
class ImageFolderLists(FolderLists):
    source: str | None = None


@dataclass
class ImageFolderData(DataCommon):
    root: str | None = _opt()
    source_domain: str = _req()
    target_domain: str = _req()
    lists: ImageFolderLists = field(default_factory=ImageFolderLists)
    test_fraction: float = _req(gt=0, lt=1)
    val_holdout: int = _req(ge=1)


# Data sets with a bias attribute (task=debias; alseg.debias.data, alseg.debias.layouts)
@dataclass
class GroupCommon:
    name: str = _req()
    seed: int = _req(ge=0)
    image_size: int = _req(ge=8, help="the side of the square images the backbone sees")
    num_workers: int = _req(ge=0)


@dataclass
class GroupSyntheticData(GroupCommon):
    conflict_ratio: float = _req(
        ge=0, le=1, help="the share of bias-conflicting training images, e.g. 0.05"
    )
    num_train: int = _req(ge=1)
    num_val: int = _req(ge=1)
    num_test: int = _req(ge=1)


@dataclass
class GroupFileData(GroupCommon):
    root: str | None = _opt()


@dataclass
class CelebAData(GroupFileData):
    target_attr: str = _req()
    bias_attr: str = _req()


@dataclass
class GroupFolderData(GroupFileData):
    groups_csv: str = _req()


# Instruction data (task=prune on text; alseg.text)
@dataclass
class InstructionFields:
    """Which record fields of a loaded file hold what (alseg.text.hf_data.Fields)."""

    instruction: str = "instruction"
    input: str | None = "input"
    response: str = "output"
    skill: str | None = None


@dataclass
class DefectRates:
    """The embedded set's share of examples with each defect (alseg.text.instructions)."""

    wrong: float = _req(ge=0, le=1)
    near_duplicate: float = _req(ge=0, le=1)
    garbled: float = _req(ge=0, le=1)
    off_task: float = _req(ge=0, le=1)
    truncated: float = _req(ge=0, le=1)


@dataclass
class InstructionsData:
    name: str = _req()
    seed: int | None = _opt(ge=0, help="the data's seed; null: the run's seed")
    source: str | None = _opt()  # null: the embedded set; a .json / .jsonl file or a hub name
    split: str = _req()
    fields: InstructionFields = field(default_factory=InstructionFields)
    on_empty: str = _req(**_choices("error", "drop"))
    limit: int | None = _opt(ge=1)
    n: int = _req(ge=1)
    rates: DefectRates = field(default_factory=DefectRates)
    trusted: int = _req(ge=1)
    target: int = _req(ge=1)
    test: int = _req(ge=1)


DATA_SCHEMAS: dict[str, type] = {
    "synthetic": SyntheticData,
    "shapes": ShapesData,
    "cityscapes": FileData,
    "gta5": FileData,
    "voc": FileData,
    "sbd": FileData,
    "folder": FolderData,
    "labelmefacade": FileData,
    "gta5_cityscapes": PairData,
    "imagefolder_da": ImageFolderData,
    "colored_shapes": GroupSyntheticData,
    "waterbird_shapes": GroupSyntheticData,
    "celeba": CelebAData,
    "waterbirds": GroupFileData,
    "group_folder": GroupFolderData,
    "instructions": InstructionsData,
    "hf_instructions": InstructionsData,
}
TEXT_DATA = ("instructions", "hf_instructions")
DEBIAS_DATA = ("colored_shapes", "waterbird_shapes", "celeba", "waterbirds", "group_folder")
