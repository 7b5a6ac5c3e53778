"""LightningModules of the debiasing methods: heads trained on cached features.

A batch is ``(features, label, bias, index)``. Every module has a main classifier ``g``
(``alseg.debias.heads.mlp_head``, logits x tau), evaluates its group accuracies on the
val split after each epoch, and keeps the state of the epoch that is best by a named
validation criterion (``select``); ``alseg.debias.run`` loads that state and tests it
once. The bias attribute of a batch is used only by GroupDRO (and by the evaluation).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from alseg.debias.heads import StackedMLP, mlp_head
from alseg.debias.losses import (
    LossEMA,
    committee_agreement,
    committee_loss,
    generalized_ce,
    group_dro_update,
    lff_weights,
    lwbc_weights,
)
from alseg.debias.metrics import GroupAccuracy

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class HeadSpec:
    """The classifier head and its optimiser (shared by every method)."""

    in_dim: int
    hidden: int | None
    num_classes: int
    num_biases: int
    bias: bool = False
    temperature: float = 1.0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0

    def optimizer_for(self, params: Any) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)


class DebiasModule(pl.LightningModule):
    """Args:
    spec: the head.
    aligned: (C,) aligned bias value per class (from the training split).
    select: validation criterion of ``alseg.debias.metrics.CRITERIA``, or "last".
    on_epoch: called with each epoch's row (console, W&B).
    """

    def __init__(
        self,
        spec: HeadSpec,
        aligned: np.ndarray,
        select: str = "worst",
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.spec, self.aligned, self.select = spec, np.asarray(aligned), select
        self.on_epoch = on_epoch
        self.main = mlp_head(spec.in_dim, spec.hidden, spec.num_classes, spec.bias)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._outputs: list[tuple[torch.Tensor, ...]] = []
        self._train_stats: dict[str, list[float]] = {}

    # -- the main classifier -------------------------------------------------------------
    def main_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) * self.spec.temperature

    def configure_optimizers(self) -> Any:
        return self.spec.optimizer_for(self.main.parameters())

    def stat(self, name: str, value: torch.Tensor | float) -> None:
        """A training statistic, averaged over the epoch into its history row."""
        v = value.detach() if isinstance(value, torch.Tensor) else value
        self._train_stats.setdefault(name, []).append(float(v))

    # -- evaluation -------------------------------------------------------------------------
    def validation_step(self, batch: Batch, _: int) -> None:
        x, y, b, _i = batch
        self._outputs.append((self.main_logits(x).argmax(1), y, b, *self.extra_predictions(x)))

    def extra_predictions(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """More predictions to evaluate (LWBC: its committee's)."""
        return ()

    def group_accuracy(
        self, preds: torch.Tensor, y: torch.Tensor, b: torch.Tensor
    ) -> GroupAccuracy:
        shape = (self.spec.num_classes, self.spec.num_biases)
        return GroupAccuracy.of(
            preds.cpu().numpy(), y.cpu().numpy(), b.cpu().numpy(), shape, self.aligned
        )

    def on_validation_epoch_end(self) -> None:
        cols = [torch.cat(c) for c in zip(*self._outputs)]
        self._outputs = []
        summary = self.group_accuracy(*cols[:3]).summary()
        row: dict[str, Any] = {"epoch": self.current_epoch + 1}
        row.update({f"val_{k}": v for k, v in summary.items()})
        row.update({k: float(np.mean(v)) for k, v in sorted(self._train_stats.items())})
        row.update(self.extra_summary(cols))
        self._train_stats = {}
        self.history.append(row)
        # ties (e.g. a worst group at 0 % for several epochs) go to the higher unbiased
        # accuracy, then to the earlier epoch
        score = (
            (row["epoch"], 0.0)
            if self.select == "last"
            else (row[f"val_{self.select}"], row["val_unbiased"])
        )
        if self.best is None or score > self.best["score"]:
            self.best = {"score": score, "epoch": row["epoch"], "state": self.selected_state()}
        if self.on_epoch is not None:
            self.on_epoch(row)

    def extra_summary(self, cols: list[torch.Tensor]) -> dict[str, float]:
        return {}

    def selected_state(self) -> dict[str, torch.Tensor]:
        """What model selection keeps (a copy): every weight and buffer."""
        return copy.deepcopy({k: v.detach().cpu() for k, v in self.state_dict().items()})

    def load_best(self) -> None:
        if self.best is not None:
            self.load_state_dict(self.best["state"])

    @torch.no_grad()
    def predict_main(self, x: torch.Tensor) -> torch.Tensor:
        return self.main_logits(x.to(self.device)).argmax(1).cpu()

    # -- the per-sample weights the run saves ----------------------------------------------
    @torch.no_grad()
    def sample_weights(
        self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """{"weight", "agreement"} per training sample (N,) at the selected state."""
        n = len(y)
        return {"weight": torch.ones(n), "agreement": torch.full((n,), float("nan"))}


class ERM(DebiasModule):
    """Empirical risk minimisation: the mean CE (JTT's two runs are ERM runs)."""

    def training_step(self, batch: Batch, _: int) -> torch.Tensor:
        x, y, _b, _i = batch
        loss = F.cross_entropy(self.main_logits(x), y)
        self.stat("train_loss", loss)
        return loss


class GroupDRO(DebiasModule):
    """GroupDRO with group labels (an upper bound): the loss is sum_g q_g L_g with
    q updated by exponentiated gradient (step size ``step_size``) each batch."""

    q: torch.Tensor

    def __init__(self, *args: Any, step_size: float = 0.01, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.step_size = step_size
        G = self.spec.num_classes * self.spec.num_biases
        self.register_buffer("q", torch.full((G,), 1.0 / G))

    def training_step(self, batch: Batch, _: int) -> torch.Tensor:
        x, y, b, _i = batch
        G = len(self.q)
        g = y * self.spec.num_biases + b
        ce = F.cross_entropy(self.main_logits(x), y, reduction="none")
        counts = torch.bincount(g, minlength=G).float()
        group_loss = torch.zeros(G, device=ce.device).index_add(0, g, ce) / counts.clamp(min=1)
        self.q = group_dro_update(self.q, group_loss, counts > 0, self.step_size)
        loss = (group_loss * self.q).sum()
        self.stat("train_loss", loss)
        return loss

    @torch.no_grad()
    def sample_weights(
        self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """q_g N / n_g: the weight a sample of group g carries in the robust loss."""
        out = super().sample_weights(x, y, b)
        g = y * self.spec.num_biases + b
        n = torch.bincount(g, minlength=len(self.q)).float().clamp(min=1)
        out["weight"] = (self.q.cpu() * len(y) / n)[g]
        return out


class LfF(DebiasModule):
    """Learning from failure: a biased head trained with generalised CE (q) and the main
    head with CE weighted by L_B / (L_B + L_D) from per-sample loss EMAs (alpha)."""

    def __init__(
        self, *args: Any, labels: torch.Tensor, q: float = 0.7, ema: float = 0.7, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        s = self.spec
        self.q = q
        self.biased = mlp_head(s.in_dim, s.hidden, s.num_classes, s.bias)
        self.ema_b = LossEMA(labels, s.num_classes, ema)
        self.ema_d = LossEMA(labels, s.num_classes, ema)

    def configure_optimizers(self) -> Any:
        # Adam keeps per-parameter state: one optimiser over both heads equals two.
        return self.spec.optimizer_for([*self.main.parameters(), *self.biased.parameters()])

    def training_step(self, batch: Batch, _: int) -> torch.Tensor:
        x, y, _b, i = batch
        logit_b = self.biased(x) * self.spec.temperature
        logit_d = self.main_logits(x)
        ce_d = F.cross_entropy(logit_d, y, reduction="none")
        self.ema_b.update(i, F.cross_entropy(logit_b, y, reduction="none").detach())
        self.ema_d.update(i, ce_d.detach())
        w = lff_weights(self.ema_b, self.ema_d, i)
        loss = generalized_ce(logit_b, y, self.q).mean() + (ce_d * w).mean()
        self.stat("train_loss", loss)
        self.stat("mean_weight", w.mean())
        return loss

    @torch.no_grad()
    def sample_weights(
        self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        out = super().sample_weights(x, y, b)
        out["weight"] = lff_weights(self.ema_b, self.ema_d, torch.arange(len(y))).cpu()
        return out


@dataclass(frozen=True)
class CommitteeSpec:
    members: int = 40
    set_size: int = 300
    alpha: float = 0.02
    loss_scale: float = 1.0
    kd_lambda: float = 0.6
    kd_temperature: float = 2.5
    warmup: int = 5


class LWBC(DebiasModule):
    """Learning with a biased committee. Epochs 1..warmup train the committee alone (CE on
    each member's bootstrap set); later epochs also train the main classifier with the
    committee's weights; after warmup + 1 the committee distils the main classifier on
    its out-of-bag samples. ``in_bag``: (M, N) bootstrap masks."""

    in_bag: torch.Tensor

    def __init__(
        self, *args: Any, committee: CommitteeSpec, in_bag: torch.Tensor, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        s = self.spec
        self.c = committee
        self.committee = StackedMLP(committee.members, s.in_dim, s.hidden, s.num_classes, s.bias)
        self.register_buffer("in_bag", in_bag)
        self.automatic_optimization = False

    def configure_optimizers(self) -> Any:
        return [
            self.spec.optimizer_for(self.committee.parameters()),
            self.spec.optimizer_for(self.main.parameters()),
        ]

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.committee(x) * self.spec.temperature

    def training_step(self, batch: Batch, _: int) -> None:
        x, y, _b, i = batch
        opt_c, opt_m = self.optimizers()  # type: ignore[attr-defined]
        epoch, c = self.current_epoch + 1, self.c
        members = self.member_logits(x)  # (M, B, C)
        in_bag = self.in_bag[:, i]
        main = None
        if epoch > c.warmup:
            agreement = committee_agreement(members.detach(), y)
            w = lwbc_weights(agreement, c.alpha)
            loss_m = (
                c.loss_scale
                * (w * F.cross_entropy(self.main_logits(x), y, reduction="none")).mean()
            )
            opt_m.zero_grad()
            self.manual_backward(loss_m)
            opt_m.step()
            self.stat("train_loss", loss_m)
            self.stat("mean_weight", w.mean())
            if epoch > c.warmup + 1:
                with torch.no_grad():
                    main = self.main_logits(x)  # the main classifier after its step
        loss_c = committee_loss(members, y, in_bag, main, c.kd_lambda, c.kd_temperature)
        opt_c.zero_grad()
        self.manual_backward(loss_c)
        opt_c.step()
        self.stat("committee_loss", loss_c)

    def extra_predictions(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.member_logits(x).argmax(2).T,)  # (B, M)

    def extra_summary(self, cols: list[torch.Tensor]) -> dict[str, float]:
        """The committee's mean val accuracies: a biased committee is right on the aligned
        groups and wrong on the conflicting ones."""
        y, b, members = cols[1], cols[2], cols[3]
        rows = [self.group_accuracy(members[:, m], y, b).summary() for m in range(members.shape[1])]
        return {
            f"committee_val_{k}": float(np.mean([r[k] for r in rows]))
            for k in ("aligned", "conflicting", "unbiased")
        }

    @torch.no_grad()
    def sample_weights(
        self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        agree = torch.cat(
            [
                committee_agreement(
                    self.member_logits(xb.to(self.device)), yb.to(self.device)
                ).cpu()
                for xb, yb in zip(x.split(4096), y.split(4096))
            ]
        )
        return {"weight": lwbc_weights(agree, self.c.alpha), "agreement": agree}
