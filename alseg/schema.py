"""The typed config schema: every key of ``conf/`` with its type, range or choices.

The YAML files under ``conf/`` hold the values (and document them); these dataclasses say
what each value may be. ``check(cfg)`` merges a composed config into them (OmegaConf
structured configs: types are converted or refused), then checks the ranges and choices
given in each field's metadata, so that a bad value stops the command before anything is
written, with a message that names the key, the value and what is valid.

A key added to a YAML file must be added here too (an unknown key is an error); a field
without a default must be present in the YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SEED_MAX = 4_000_000  # seed * 1000 + round stays within the 32 bits of Lightning's seeding


def _ge(v: float) -> dict[str, Any]:
    return {"ge": v}


def _gt(v: float) -> dict[str, Any]:
    return {"gt": v}


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _opt(default: Any = None, **meta: Any) -> Any:
    return field(default=default, metadata=meta)


def _req(**meta: Any) -> Any:
    return field(default=MISSING, metadata=meta)


@dataclass
class ActiveConfig:
    rounds: int = _req(ge=1)
    budget: float = _req(gt=0)
    init_budget: float | None = _opt(ge=0)
    full_supervision: bool = _opt(False)
    # a name, or a schedule: a list of names, one per selection (round 0's set first)
    strategy: Any = _req(schedule="strategies")
    strategy_params: dict[str, Any] = field(default_factory=dict)
    reinit: bool = _req()
    schedule: str = _req(**_choices("rounds", "continuous"))
    init_steps: int | None = _opt(
        ge=1,
        help="the iterations of round 0 of active.schedule=continuous, an integer >= 1, or "
        "null (= trainer.max_steps)",
    )
    final_steps: int | None = _opt(
        ge=1, help="the iterations of the last round of active.schedule=continuous, or null"
    )
    lr_total_steps: int | None = _opt(
        ge=1, help="the lr schedule's length in active.schedule=continuous, or null"
    )
    keep_checkpoints: int = _req(ge=1, help="a resumed run needs the last round's checkpoint")
    channels_last: bool = _req()


@dataclass
class Stage2Config:
    enabled: bool = _req()
    lr: float | None = _opt(gt=0)


@dataclass
class WeakConfig:
    pooling: str = _req(**_choices("gap", "gmp", "lse"))
    lse_r: float = _req(gt=0)
    cam_scales: list[float] = _req(item_gt=0)
    fg_threshold: float = _req(ge=0, le=1)
    bg_threshold: float = _req(ge=0, le=1)
    stride: int = _opt(1, ge=1)
    radius: int = _req(ge=2)
    walk_radius: int | None = _opt(None, ge=2)
    beta: float = _req(gt=0)
    walk_steps: int = _req(ge=0)
    boundary_epochs: int | None = _opt(ge=1)
    boundary_max_dist: float = _opt(0.0075, gt=0, lt=1)
    boundary_tolerance: float | None = _opt(None, ge=0)
    pseudo_labels: bool = _req()
    background: bool = _opt(False)
    bg_score: float = _opt(0.25, ge=0, le=1)
    tag_arch: str | None = _opt(choices="architectures")


@dataclass
class AdaptationConfig:
    enabled: bool = _req()
    alignment: str = _req(**_choices("none", "dann", "entropy"))
    discriminate: str = _req(**_choices("features", "output"))
    disc_hidden: list[int] = _req(item_ge=1)
    align_weight: float = _req(ge=0)
    grl_scale: float = _req(gt=0)
    source_sampling: str = _req(**_choices("balanced", "uniform"))
    match_labels: bool | None = _opt()  # null: on for lamda


@dataclass
class SieveSettings:
    enabled: bool = _req()
    min_size: int = _req(ge=1)
    reference_area: int = _req(ge=1)
    min_pixels: int = _req(ge=3)
    step: int = _req(ge=1)
    scope: str = _req(**_choices("all", "new"))
    scale: float = _opt(1.0, gt=0, le=1)


@dataclass
class SeedsConfig:
    num_levels: int = _req(ge=1)
    prior: int = _req(ge=0)
    histogram_bins: int = _req(ge=1)
    iterations: int = _req(ge=1)


@dataclass
class RegionsConfig:
    method: str = _req(**_choices("slic", "seeds", "grid", "image"))
    n_segments: int = _req(ge=2)
    compactness: float = _req(gt=0)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    cell: int = _req(ge=1)
    cache_dir: str | None = _opt()
    num_workers: int = _req(ge=0)
    max_memory_mb: float = _req(gt=0)


@dataclass
class ModelConfig:
    arch: str = _req(choices="architectures")
    encoder: str = _req()
    encoder_weights: str | None = _opt()
    optimizer: str = _req(**_choices("adamw", "sgd"))
    nesterov: bool = _req()
    lr_schedule: str = _req(**_choices("poly", "inv"))
    lr: float = _req(gt=0)
    head_lr_mult: float = _req(gt=0)
    weight_decay: float = _req(ge=0)
    poly_power: float = _req(ge=0)
    head: str = _req(**_choices("linear", "cosine"))
    head_temperature: float = _req(gt=0)
    loss_weights: list[float] = _req(length=3, item_ge=0)


@dataclass
class LabelingConfig:
    type: str = _req(**_choices("dominant", "pixel", "multiclass", "image"))
    cost_per_region: float = _req(gt=0)
    void_bit: bool = _req()
    trim_kernel: int = _req(ge=1, odd=True)
    oracle: str = _opt("simulated", **_choices("simulated", "human"))


@dataclass
class TrainerConfig:
    accelerator: str = _req()
    devices: Any = _req(devices=True)  # an int >= 1, a list of device ids, or "auto"
    strategy: str = _req()
    num_nodes: int = _req(ge=1)
    precision: Any = _req()  # Lightning's precision names: 32-true, bf16-mixed, 16-mixed ...
    max_epochs: int = _req(ge=-1)
    max_steps: int = _req(ge=-1)
    enable_progress_bar: bool = _req()
    deterministic: bool = _req()
    log_every_n_steps: int = _req(ge=1)


@dataclass
class LoggerConfig:
    enabled: bool = _req()
    project: str = _req()
    mode: str = _req(**_choices("offline", "online", "disabled"))
    group: str | None = _opt()
    tags: list[str] = field(default_factory=list)


# -- data sets: one schema per data.name ------------------------------------------------------
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


# Data sets with a bias attribute (task=debias; alseg.debias.data)
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
}
DEBIAS_DATA = ("colored_shapes", "waterbird_shapes", "celeba", "waterbirds", "group_folder")


@dataclass
class LWBCSettings:
    members: int = _req(ge=1)
    set_size: int = _req(ge=1, help="bootstrap indices per class and member")
    alpha: float = _req(gt=0)
    loss_scale: float = _req(gt=0)
    kd_lambda: float = _req(ge=0, le=1)
    kd_temperature: float = _req(gt=0)
    warmup: int = _req(ge=0)


@dataclass
class JTTSettings:
    identify_epochs: list[int] = _req(item_ge=1)
    # copies added per error (1 + lambda in all); floats, as run dirs saved them before
    upweight: list[float] = _req(item_ge=1, whole=True)


@dataclass
class LfFSettings:
    q: float = _req(gt=0, le=1)
    ema: float = _req(ge=0, lt=1)


@dataclass
class GroupDROSettings:
    step_size: float = _req(gt=0)


@dataclass
class FeatureSettings:
    backbone: str = _req(**_choices("simclr", "torchvision", "checkpoint"))
    arch: str = _req()
    weights: str | None = _opt()
    checkpoint: str | None = _opt()
    batch_size: int = _req(ge=1)
    cache_dir: str = _req()


@dataclass
class SSLSettings:
    epochs: int = _req(ge=0)
    batch_size: int = _req(ge=2)
    lr: float = _req(gt=0)
    temperature: float = _req(gt=0)
    seed: int = _req(ge=0)


@dataclass
class PruneConfig:
    stage: str = _req(**_choices("score", "retrain"))
    score_seeds: list[int] = _req(item_ge=0)
    el2n_epochs: list[int] = _req(item_ge=0)
    grand_epochs: list[int] = _req(item_ge=0)
    window: int = _req(ge=2)
    grand_chunk: int = _req(ge=1)
    scores: str | None = _opt()
    by: str = _req(
        **_choices("el2n", "grand", "grand_last", "forgetting", "dyn_unc", "aum", "aum_prob")
    )
    rule: str = _req(
        **_choices(
            "hardest", "hardest_balanced", "easiest", "offset", "random", "random_balanced", "ccs"
        )
    )
    keep: float = _req(gt=0, le=1)
    offset: float = _req(ge=0, lt=1)
    ccs_beta: float = _req(ge=0, lt=1)
    ccs_strata: int = _req(ge=1)


@dataclass
class PretrainConfig:
    method: str = _req(**_choices("simclr", "densecl"))
    epochs: int = _req(ge=1)
    batch_size: int = _req(ge=2)
    lr: float = _req(gt=0)
    temperature: float | None = _opt(gt=0)
    input_size: int = _req(ge=16)
    blur: float = _req(ge=0, le=1)
    dense_weight: float = _req(ge=0, le=1)
    momentum: float = _req(ge=0, le=1)
    memory_bank: int = _req(ge=1)
    seed: int = _req(ge=0)


@dataclass
class DebiasConfig:
    method: str = _req(**_choices("erm", "jtt", "lff", "lwbc", "groupdro"))
    epochs: int = _req(ge=1)
    batch_size: int = _req(ge=1)
    optimizer: str = _req(**_choices("adam", "sgd"))
    lr: float = _req(gt=0)
    weight_decay: float = _req(ge=0)
    hidden: int | None = _opt(ge=1)
    bias: bool = _req()
    temperature: float = _req(gt=0)
    select: str = _req(**_choices("worst", "unbiased", "conflicting", "accuracy", "last"))
    top_samples: int = _req(ge=0)
    lwbc: LWBCSettings = field(default_factory=LWBCSettings)
    jtt: JTTSettings = field(default_factory=JTTSettings)
    lff: LfFSettings = field(default_factory=LfFSettings)
    groupdro: GroupDROSettings = field(default_factory=GroupDROSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    ssl: SSLSettings = field(default_factory=SSLSettings)


@dataclass
class RootConfig:
    seed: int = _req(ge=0, le=SEED_MAX, help="seed * 1000 + round seeds each round's training")
    run_dir: str | None = _opt()
    task: str = _req(**_choices("active", "debias", "prune"))
    active: ActiveConfig = field(default_factory=ActiveConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    weak: WeakConfig = field(default_factory=WeakConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    sieve: SieveSettings = field(default_factory=SieveSettings)
    regions: RegionsConfig = field(default_factory=RegionsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    debias: DebiasConfig = field(default_factory=DebiasConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    data: Any = _req()  # checked against DATA_SCHEMAS[data.name]


class SchemaError(ValueError):
    """A config value has the wrong type, range or choice; the message names the key."""


def _type_name(cls: type, key: str) -> str:
    """The declared type of ``key`` (dotted, relative to ``cls``), in words."""
    node: type | None = cls
    ann = "value"
    for part in key.split("[")[0].split("."):
        match = [f for f in fields(node) if f.name == part] if node is not None else []
        if not match:
            return ann
        ann, node = str(match[0].type), _sub_schema(match[0])
    optional = ann.endswith(" | None")
    bare = ann[: -len(" | None")] if optional else ann
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    if bare.startswith("list[") and bare[5:-1] in words:
        text = f"a list of {bare[5:-1]} values"
    else:
        text = words.get(bare, bare)
    return text + (" or null" if optional else "")


def _merge(cls: type, cfg: DictConfig, prefix: str) -> DictConfig:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
    except OmegaConfBaseException as e:
        key = f"{prefix}{e.full_key}"
        if type(e).__name__ == "ConfigKeyError":
            raise SchemaError(
                f"unknown config key {key!r} (see conf/ and alseg/schema.py)"
            ) from None
        value = getattr(e, "value", None)
        raise SchemaError(
            f"{key}={value!r} is not valid: expected {_type_name(cls, str(e.full_key))}"
        ) from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise SchemaError(f"config key {prefix}{missing[0]} has no value; set it (key=value)")
    assert isinstance(merged, DictConfig)
    return merged


def _check_value(key: str, value: Any, meta: dict[str, Any], valid: dict[str, list[str]]) -> None:
    def fail(what: str) -> None:
        hint = f" ({meta['help']})" if "help" in meta else ""
        raise SchemaError(f"{key}={_show(value)} {what}{hint}")

    if value is None:
        return
    if "schedule" in meta:
        names = list(value) if isinstance(value, (list, ListConfig)) else [value]
        options = valid.get(meta["schedule"], [])
        if not names:
            fail("is an empty schedule; give a strategy name or a list of them")
        bad = [n for n in names if not isinstance(n, str) or (options and n not in options)]
        if bad and len(names) == 1:
            fail(f"is not valid; choose one of: {', '.join(options)}")
        if bad:
            fail(f"names {bad[0]!r}, which is no strategy; choose from: {', '.join(options)}")
    if "choices" in meta:
        choices = meta["choices"]
        options = valid.get(choices, []) if isinstance(choices, str) else list(choices)
        if options and value not in options:
            fail(f"is not valid; choose one of: {', '.join(options)}")
    if "length" in meta and len(value) != meta["length"]:
        fail(f"must have {meta['length']} values")
    items = list(value) if isinstance(value, (list, ListConfig)) else [value]
    for op, text in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        for name in (op, f"item_{op}"):
            if name in meta and any(not _compare(v, op, meta[name]) for v in items):
                fail(f"must be {text} {meta[name]}" + (" (each value)" if "item" in name else ""))
    if meta.get("whole") and any(float(v) != int(v) for v in items):
        fail("must be whole numbers")
    if meta.get("odd") and value % 2 == 0:
        fail("must be odd")
    if meta.get("devices") and not _valid_devices(value):
        fail('is not valid; give a number of devices >= 1, a list of device ids, or "auto"')
    if meta.get("image_size") and not _valid_image_size(value):
        fail("is not valid; give a side >= 8 (int), [height, width] >= 8, or null")


def _compare(v: Any, op: str, bound: float) -> bool:
    return {"ge": v >= bound, "gt": v > bound, "le": v <= bound, "lt": v < bound}[op]


def _valid_devices(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return (
            v == "auto" or v.lstrip("-").isdigit() or all(p.strip().isdigit() for p in v.split(","))
        )
    if isinstance(v, (list, ListConfig)):
        return len(v) > 0 and all(isinstance(i, int) and i >= 0 for i in v)
    return False


def _valid_image_size(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 8
    if isinstance(v, (list, ListConfig)):
        return len(v) == 2 and all(isinstance(i, int) and i >= 8 for i in v)
    return False


def _show(value: Any) -> str:
    """A value as the user typed it: integral floats without ".0", strings quoted."""
    if isinstance(value, (DictConfig, ListConfig)):
        return str(OmegaConf.to_container(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _sub_schema(f: Any) -> type | None:
    """The dataclass of a nested section (a field with a dataclass default factory)."""
    if f.default_factory is not dataclasses.MISSING:
        obj = f.default_factory()
        if is_dataclass(obj):
            return type(obj)
    return None


def _check_ranges(cls: type, cfg: DictConfig, prefix: str, valid: dict[str, list[str]]) -> None:
    for f in fields(cls):
        value = cfg.get(f.name)
        sub = _sub_schema(f)
        if sub is not None and isinstance(value, DictConfig):
            _check_ranges(sub, value, f"{prefix}{f.name}.", valid)
        elif f.metadata:
            _check_value(f"{prefix}{f.name}", value, dict(f.metadata), valid)


def check(cfg: DictConfig, valid: dict[str, list[str]]) -> DictConfig:
    """The typed config: ``cfg`` merged into the schema, ranges and choices checked.

    Args:
        cfg: a composed config.
        valid: choices known at run time (``strategies``, ``architectures``).
    Raises:
        SchemaError naming the key, the value and what is valid.
    """
    data = cfg.get("data")
    name = data.get("name") if isinstance(data, DictConfig) else None
    if name not in DATA_SCHEMAS:
        raise SchemaError(
            f"data.name={name!r} is not valid; choose one of: {', '.join(DATA_SCHEMAS)}"
        )
    typed = _merge(RootConfig, cfg, "")
    typed_data = _merge(DATA_SCHEMAS[name], cfg.data, "data.")
    _check_ranges(RootConfig, typed, "", valid)
    _check_ranges(DATA_SCHEMAS[name], typed_data, "data.", valid)
    # The data section stays an open DictConfig (its keys differ by data set), typed.
    container = OmegaConf.to_container(typed, resolve=True)
    assert isinstance(container, dict)
    container["data"] = OmegaConf.to_container(typed_data, resolve=True)
    out = OmegaConf.create(container)
    OmegaConf.set_struct(out, True)
    return out
