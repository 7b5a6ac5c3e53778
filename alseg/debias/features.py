"""Frozen backbone features, computed once in a Lightning predict pass and cached.

The backbone (``debias.features``):

- ``simclr``: a ResNet pre-trained here with SimCLR on the training images
  (``alseg.debias.ssl``; no download, the default);
- ``torchvision``: a torchvision ResNet, randomly initialised or with ``weights`` (a
  torchvision weights name such as ``IMAGENET1K_V1``: downloads, an opt-in);
- ``checkpoint``: the ResNet with the weights of a file (a state dict, or a Lightning
  checkpoint whose ``state_dict`` holds ``backbone.`` keys).

Features of the train, val and test splits are cached under ``features.cache_dir`` by a
key of the data sets' fingerprints and the backbone's settings, so that every method and
seed of a data set reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torchvision
from torch.utils.data import DataLoader

from alseg.atomic import atomic_write
from alseg.debias.data import GroupDataset
from alseg.debias.ssl import SSLSpec, pretrain

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("simclr", "torchvision", "checkpoint")
FEATURES_VERSION = 1


class FeatureError(ValueError):
    """A backbone setting or checkpoint is wrong; the message names it."""


def resnet(arch: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier, and its feature size."""
    if not arch.startswith("resnet") or not hasattr(torchvision.models, arch):
        raise FeatureError(
            f"debias.features.arch={arch!r} is not a torchvision ResNet (resnet18, resnet34, "
            "resnet50, ...)"
        )
    net = getattr(torchvision.models, arch)(weights=weights)
    dim = int(net.fc.in_features)
    net.fc = nn.Identity()
    return net, dim


def load_checkpoint(net: nn.Module, path: str | None) -> None:
    """Load a state dict (or a checkpoint's ``state_dict``; prefixes ``backbone.``,
    ``module.``, ``encoder.`` stripped; classifier keys ``fc.`` dropped) into ``net``."""
    if not path or not Path(path).is_file():
        raise FeatureError(f"debias.features.checkpoint={path!r} is not a file")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise FeatureError(f"{path} holds no state dict")
    clean = {}
    for k, v in state.items():
        for prefix in ("backbone.", "module.", "encoder."):
            k = k.removeprefix(prefix)
        if not k.startswith(("fc.", "projection.")):
            clean[k] = v
    result = net.load_state_dict(clean, strict=False)
    if result.missing_keys:
        raise FeatureError(
            f"{path} does not fit the backbone: {len(result.missing_keys)} missing keys "
            f"(first: {result.missing_keys[0]}); give a state dict of debias.features.arch"
        )


class FeatureExtractor(pl.LightningModule):
    """``predict_step`` -> {"index", "features"} of a batch (ImageNet normalisation)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[:, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[:, None, None])

    def predict_step(self, batch: dict[str, Any], _: int) -> dict[str, torch.Tensor]:
        x = (batch["image"] - self.mean) / self.std
        return {"index": batch["index"], "features": self.backbone(x).flatten(1).float()}


def extract(
    backbone: nn.Module, ds: GroupDataset, batch_size: int, trainer: pl.Trainer
) -> torch.Tensor:
    """(N, D) features of ``ds`` in index order."""
    backbone.eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    out = trainer.predict(FeatureExtractor(backbone), loader)
    assert out is not None
    index = torch.cat([o["index"] for o in out])  # type: ignore[call-overload]
    feats = torch.cat([o["features"] for o in out])  # type: ignore[call-overload]
    return feats[index.argsort()]


def feature_key(f: Any, ssl: SSLSpec, sets: tuple[GroupDataset, ...]) -> str:
    """The cache key: the data sets and everything that changes the backbone."""
    spec: dict[str, Any] = {
        "version": FEATURES_VERSION,
        "sets": [s.fingerprint for s in sets],
        "backbone": f.backbone,
        "arch": f.arch,
    }
    if f.backbone == "simclr":
        spec["ssl"] = asdict(ssl)
    elif f.backbone == "torchvision":
        spec["weights"] = f.weights
    else:
        h = hashlib.sha256(Path(f.checkpoint).read_bytes()).hexdigest()
        spec["checkpoint"] = h
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_backbone(
    f: Any,
    ssl: SSLSpec,
    train: GroupDataset,
    image_size: int,
    ssl_trainer: Callable[[], pl.Trainer],
) -> nn.Module:
    if f.backbone not in BACKBONES:
        raise FeatureError(
            f"debias.features.backbone={f.backbone!r} is not valid; choose one of: "
            f"{', '.join(BACKBONES)}"
        )
    net, dim = resnet(f.arch, f.weights if f.backbone == "torchvision" else None)
    if f.backbone == "checkpoint":
        load_checkpoint(net, f.checkpoint)
    elif f.backbone == "simclr":
        pretrain(net, dim, train, image_size, ssl, ssl_trainer())
    return net


def cached_features(
    f: Any,
    ssl: SSLSpec,
    sets: tuple[GroupDataset, GroupDataset, GroupDataset],
    image_size: int,
    make_trainer: Callable[..., pl.Trainer],
    log: Callable[[str], None] = print,
) -> tuple[dict[str, torch.Tensor], Path]:
    """{"train", "val", "test"} -> (N, D) features (from the cache when there), and the
    cache file."""
    if f.backbone == "checkpoint":
        load_checkpoint(resnet(f.arch)[0], f.checkpoint)  # a bad file is named first
    path = Path(f.cache_dir) / f"{feature_key(f, ssl, sets)}.pt"
    if path.is_file():
        log(f"features from the cache: {path}")
        return torch.load(path, map_location="cpu"), path
    log(f"computing features ({f.backbone} {f.arch}) -> {path}")
    backbone = build_backbone(
        f, ssl, sets[0], image_size, lambda: make_trainer(max_epochs=ssl.epochs)
    )
    trainer = make_trainer(max_epochs=1)
    feats = {s.split: extract(backbone, s, f.batch_size, trainer) for s in sets}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(feats, fh))
    if f.backbone == "simclr":  # the pre-trained backbone, for reuse elsewhere
        state = backbone.state_dict()
        atomic_write(path.with_suffix(".backbone.pt"), lambda fh: torch.save(state, fh))
    return feats, path
