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

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alseg.schema.data import DATA_SCHEMAS, DEBIAS_DATA, TEXT_DATA
from alseg.schema.field_meta import SEED_MAX
from alseg.schema.field_meta import choices as _choices
from alseg.schema.field_meta import opt as _opt
from alseg.schema.field_meta import req as _req
from alseg.schema.sections import (
    ActiveConfig,
    AdaptationConfig,
    DebiasConfig,
    LabelingConfig,
    LoggerConfig,
    ModelConfig,
    PretrainConfig,
    PruneConfig,
    RegionsConfig,
    SieveSettings,
    Stage2Config,
    TextConfig,
    TrainerConfig,
    WeakConfig,
)

__all__ = [
    "DATA_SCHEMAS",
    "DEBIAS_DATA",
    "TEXT_DATA",
    "SEED_MAX",
    "RootConfig",
    "SchemaError",
    "check",
    "settings",
]


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
    text: TextConfig = field(default_factory=TextConfig)
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
            raise SchemaError(f"unknown config key {key!r} (see conf/ and alseg/schema/)") from None
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


def settings(cfg: DictConfig) -> RootConfig:
    """A checked config (``check``) as typed objects: each section its dataclass, ``data``
    its data set's schema dataclass. Builders read these, so mypy checks every key they
    use; a run's saved config.yaml and W&B config stay the DictConfig's YAML."""
    data = _merge(DATA_SCHEMAS[cfg.data.name], cfg.data, "data.")
    root = OmegaConf.to_object(_merge(RootConfig, cfg, ""))
    assert isinstance(root, RootConfig)
    root.data = OmegaConf.to_object(data)
    return root
