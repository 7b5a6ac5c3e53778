"""The schema of the config sections other than ``data`` (``alseg.schema.RootConfig`` holds
one of each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alseg.schema.field_meta import choices as _choices
from alseg.schema.field_meta import opt as _opt
from alseg.schema.field_meta import req as _req
from alseg.text.rules import rule_names

# prune.rule: the rules of images (alseg.prune.select) and of text (alseg.text.rules)
IMAGE_RULES = (
    "hardest",
    "hardest_balanced",
    "easiest",
    "offset",
    "random",
    "random_balanced",
    "ccs",
)
TEXT_RULES = tuple(rule_names())


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
    # images: IMAGE_RULES; text (data=instructions): alseg.text.rules (by is not read there)
    rule: str = _req(**_choices(*dict.fromkeys((*IMAGE_RULES, *TEXT_RULES))))
    keep: float = _req(gt=0, le=1)
    offset: float = _req(ge=0, lt=1)
    ccs_beta: float = _req(ge=0, lt=1)
    ccs_strata: int = _req(ge=1)


@dataclass
class TextConfig:
    """The language model of task=prune on text (alseg.text; conf/config.yaml's ``text``)."""

    name_or_path: str | None = _opt()
    context: int = _req(ge=8)
    vocab: int = _req(ge=16)
    width: int = _req(ge=1)
    layers: int = _req(ge=1)
    heads: int = _req(ge=1)
    steps: int = _req(ge=1)
    batch: int = _req(ge=1)
    lr: float = _req(gt=0)
    ref_steps: int = _req(ge=1)
    el2n_steps: int = _req(ge=1)
    clusters: int = _req(ge=1)
    less_warmup: float = _req(gt=0, le=1)
    less_epochs: int = _req(ge=1)
    less_dim: int = _req(ge=1)
    lora_rank: int = _req(ge=1)
    lora_targets: list[str] = _req()


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
