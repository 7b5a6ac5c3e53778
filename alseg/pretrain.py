"""``alseg pretrain``: self-supervised pre-training of the segmentation model's encoder on the
pool's images (no labels), a representation before the first label.

The run is a Lightning fit like the others (DDP, progress bar, W&B, a run dir) and resumes
from its last epoch to the same weights (``alseg.selfsup``: epoch-seeded order and views;
Lightning's checkpoint of each epoch, loaded with ``weights_only=True``). Its result,
``encoder.pt`` (the encoder's state dict) with ``pretrain.json`` (method, encoder, the
pool's fingerprint, the settings), is addressed by the pool's fingerprint and the
pre-training settings: the default run dir is ``runs/pretrain/<method>-<encoder>-<pool
fingerprint>-<settings hash>``, so every active-learning run and seed of that pool reuses
one pre-training, and running the command again finds it done.

``model.encoder_weights=<run dir or encoder.pt>`` loads it into every model a run builds
(each round's re-initialisation starts the encoder from it; decoder and head fresh), as
ImageNet weights are loaded. Weights of another encoder, or of another pool (fingerprint),
are refused naming both.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch.utils.data import DataLoader

from alseg import schema
from alseg.atomic import sha256_file
from alseg.config import changed_keys, flatten
from alseg.distributed import is_rank_zero, shard_drop_last
from alseg.rundir import RunDir, RunDirError
from alseg.schema.sections import PretrainConfig
from alseg.state import Phase, RunState
from alseg.tracking import user_console

ENCODER_FILE = "encoder.pt"
META_FILE = "pretrain.json"
CHECKPOINT = "checkpoints/last.ckpt"
METHODS = ("simclr", "densecl")
DEFAULT_TEMPERATURE = {"simclr": 0.5, "densecl": 0.2}  # lightly's SimCLR, DenseCL's paper


class PretrainError(ValueError):
    """Pre-trained weights that do not fit the run; the message says which and why."""


# -- addressing ----------------------------------------------------------------------------
def settings(cfg: DictConfig) -> dict[str, Any]:
    """What the pre-trained weights depend on besides the pool: the method's settings, the
    network and the seed. Read from the composed config as written (not its typed object,
    which turns e.g. ``lr: 1`` into 1.0), so that a saved pre-training's hash stays valid."""
    p = OmegaConf.to_container(cfg.pretrain, resolve=True)
    assert isinstance(p, dict)
    return {**p, "arch": str(cfg.model.arch), "encoder": str(cfg.model.encoder)}


def inputs(cfg: DictConfig) -> dict[str, Any]:
    """Every config key the pre-trained weights depend on: the method's settings, the network,
    the data and the numeric precision. A done pre-training is reused, and a killed one
    resumed, when these agree; the rest of a config (the later run's strategy, its logger,
    how many checkpoints it keeps) may differ."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {
        "pretrain": settings(cfg),
        "data": data,
        "trainer": {"precision": str(cfg.trainer.precision)},
    }


def default_dir(cfg: DictConfig, fingerprint: str) -> Path:
    """runs/pretrain/<method>-<encoder>-<pool fingerprint>-<settings hash>."""
    key = json.dumps(settings(cfg), sort_keys=True).encode()
    digest = hashlib.sha1(key).hexdigest()[:8]
    # a name a shell takes unquoted: "crop(96, 128)" -> "crop96x128"
    pool = re.sub(r"\((\d+), (\d+)\)", r"\1x\2", fingerprint)
    pool = re.sub(r"[^A-Za-z0-9._-]+", "", pool)
    name = f"{cfg.pretrain.method}-{cfg.model.encoder}-{pool}-{digest}"
    return Path("runs") / "pretrain" / name


# -- loading into a run --------------------------------------------------------------------
def is_weights_path(value: str | None) -> TypeGuard[str]:
    """``model.encoder_weights`` names a file or folder (not smp's 'imagenet' & co.)."""
    if not value:
        return False
    return os.sep in value or value.endswith(".pt") or Path(value).exists()


def _files(path: str) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    weights = p / ENCODER_FILE if p.is_dir() else p
    meta = weights.with_name(META_FILE)
    if not weights.is_file():
        raise PretrainError(
            f"model.encoder_weights={path}: no {ENCODER_FILE} there (give the run dir of "
            "`alseg pretrain` or its encoder.pt)"
        )
    if not meta.is_file():
        raise PretrainError(f"model.encoder_weights={path}: {meta} is missing")
    return weights, meta


def read_meta(path: str) -> dict[str, Any]:
    """pretrain.json of the weights at ``path`` (run dir or encoder.pt)."""
    _, meta = _files(path)
    try:
        return dict(json.loads(meta.read_text()))
    except (OSError, ValueError) as e:
        raise PretrainError(f"{meta} is corrupt ({e})") from e


def check_pretrained(path: str, encoder: str, fingerprint: str) -> dict[str, Any]:
    """The weights at ``path`` were pre-trained for ``encoder`` on the pool of
    ``fingerprint``; else PretrainError naming both. Returns their meta."""
    meta = read_meta(path)
    if meta.get("encoder") != encoder:
        raise PretrainError(
            f"model.encoder_weights={path} holds a {meta.get('encoder')!r} encoder; this run's "
            f"model.encoder={encoder!r}: pre-train that encoder, or set model.encoder="
            f"{meta.get('encoder')}"
        )
    if meta.get("fingerprint") != fingerprint:
        raise PretrainError(
            f"model.encoder_weights={path} was pre-trained on the pool {meta.get('fingerprint')}"
            f", this run's pool is {fingerprint} (another data set, split or image size): "
            "pre-train on this pool (`alseg pretrain` with the run's data settings)"
        )
    return meta


def load_pretrained(encoder: torch.nn.Module, path: str, name: str) -> None:
    """Load ``encoder.pt`` into an smp ``encoder`` (``name``: model.encoder), weights only."""
    weights, _ = _files(path)
    meta = read_meta(path)
    if meta.get("encoder") != name:
        raise PretrainError(
            f"model.encoder_weights={path} holds a {meta.get('encoder')!r} encoder, not {name!r}"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        raise PretrainError(f"{weights} does not fit the {name} encoder: {e}") from None


# -- the run --------------------------------------------------------------------------------
class EpochCommit(pl.Callback):
    """After each epoch: Lightning's checkpoint (atomically renamed into place) and
    state.json with its checksum and the epochs done (rank 0 writes)."""

    def __init__(self, rundir: RunDir, state: RunState) -> None:
        self.rundir, self.state = rundir, state

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        path = self.rundir.path / CHECKPOINT
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank calls, rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)
            self.rundir.files[CHECKPOINT] = sha256_file(path)
            done = trainer.current_epoch + 1
            self.rundir.write_state(replace(self.state, round=done, phase=Phase.FITTED))


def _module(p: PretrainConfig, backbone: torch.nn.Module, channels: int) -> pl.LightningModule:
    from alseg.selfsup import DenseCL, SimCLR

    t = p.temperature if p.temperature is not None else DEFAULT_TEMPERATURE[p.method]
    if p.method == "simclr":
        return SimCLR(backbone, channels, p.epochs, p.lr, t)
    return DenseCL(backbone, channels, p.epochs, p.lr, t, p.dense_weight, p.momentum, p.memory_bank)


def _transform(p: PretrainConfig) -> Any:
    from lightly.transforms import DenseCLTransform, SimCLRTransform

    make = SimCLRTransform if p.method == "simclr" else DenseCLTransform
    return make(input_size=p.input_size, gaussian_blur=p.blur)


def _check_saved(rd: RunDir, cfg: DictConfig) -> None:
    """Refuse a run dir whose pre-training read other settings (names the first four)."""
    saved = OmegaConf.load(rd.config_path)
    assert isinstance(saved, DictConfig)
    before, after = inputs(saved), inputs(cfg)
    differ = changed_keys(before, after)
    if differ:
        was, now = flatten(before), flatten(after)
        shown = ", ".join(f"{k}: {was.get(k)} -> {now.get(k)}" for k in differ[:4])
        raise RunDirError(
            f"{rd.path} holds a pre-training with other settings ({shown}); choose another run_dir"
        )


def _trainer(
    cfg: DictConfig, s: schema.RootConfig, rd: RunDir, state: RunState, rank_zero: bool
) -> pl.Trainer:
    """The experiment's trainer (``alseg.build.trainer_factory``) for ``pretrain.epochs``,
    committing each epoch. ``s``: ``cfg``'s typed sections."""
    from alseg.build import build_logger, trainer_factory

    logger = build_logger(cfg, rd) if rank_zero else None
    make = trainer_factory(s.trainer, logger, rd.path)
    return make([EpochCommit(rd, state)], max_steps=-1, max_epochs=s.pretrain.epochs)


def _save_encoder(
    rd: RunDir, cfg: DictConfig, encoder: Any, trainer: pl.Trainer, fingerprint: str
) -> None:
    """Write encoder.pt and pretrain.json (the metadata), drop the checkpoint."""
    loss = trainer.callback_metrics.get("ssl_loss")
    meta = {
        "method": str(cfg.pretrain.method),
        "arch": str(cfg.model.arch),
        "encoder": str(cfg.model.encoder),
        "fingerprint": fingerprint,
        "data": str(cfg.data.name),
        "settings": settings(cfg),
        "epochs": int(trainer.current_epoch),
        "final_loss": float(loss) if loss is not None else None,
    }
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, buf)
    rd.write_file(rd.path / ENCODER_FILE, buf.getvalue())
    rd.write_file(rd.path / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    rd.forget(rd.path / CHECKPOINT)  # done: the encoder is what later runs read


def run_pretrain(
    cfg: DictConfig, run_dir: Path | None = None, console: Console | None = None
) -> Path:
    """Pre-train (or resume, or find done) the encoder of ``cfg`` on its pool; the run dir."""
    from alseg.build import quiet_lightning
    from alseg.models.segmentation import build_network
    from alseg.parts import build_datasets
    from alseg.selfsup import Encoder, EpochSampler, TwoViews

    quiet_lightning()
    rank_zero = is_rank_zero()
    console = (console or user_console()) if rank_zero else Console(quiet=True)
    s = schema.settings(cfg)
    p, model = s.pretrain, s.model
    if model.arch == "Classifier":
        raise PretrainError("alseg pretrain trains smp encoders; model.arch=Classifier has none")
    train = build_datasets(s.data)[0]
    fingerprint = str(train.fingerprint)
    rd = RunDir(run_dir or default_dir(cfg, fingerprint))
    with rd.locked("pretrain") if rank_zero else contextlib.nullcontext(rd):
        state = RunState(seed=p.seed, task="pretrain")
        ckpt = None
        if rd.state_path.is_file():
            found = rd.read_state()
            _check_saved(rd, cfg)
            if found.phase == Phase.DONE:
                console.log(f"pre-trained encoder found: {rd.path} (reused)")
                return rd.path
            rd.verify()
            ckpt = rd.path / CHECKPOINT
            console.log(f"resuming {rd.path} after epoch {found.round}")
        elif rank_zero:
            rd.create(OmegaConf.to_yaml(cfg, resolve=True))
        pl.seed_everything(p.seed, workers=True, verbose=False)
        network = build_network(model.arch, model.encoder, None, 1)
        encoder: Any = network.encoder
        backbone = Encoder(encoder, int(encoder.out_channels[-1]))
        module = _module(p, backbone, backbone.channels)
        views = TwoViews(train.image_uint8, len(train), _transform(p), p.seed)
        trainer = _trainer(cfg, s, rd, state, rank_zero)
        batch = min(p.batch_size, len(views))
        loader = DataLoader(
            views,
            batch_size=batch,
            sampler=EpochSampler(len(views), p.seed),
            drop_last=shard_drop_last(len(views), batch, trainer.world_size),
            num_workers=s.data.num_workers,
        )
        console.log(
            f"pre-training {model.encoder} ({p.method}, {p.epochs} epochs) on "
            f"{len(train)} pool images: {rd.path}"
        )
        trainer.fit(module, loader, ckpt_path=ckpt, weights_only=True)
        if rank_zero:
            _save_encoder(rd, cfg, encoder, trainer, fingerprint)
            rd.write_state(replace(state, round=int(trainer.current_epoch), phase=Phase.DONE))
            console.log(
                f"encoder weights: {rd.path / ENCODER_FILE} (model.encoder_weights={rd.path})"
            )
    return rd.path
