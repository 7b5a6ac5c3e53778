"""The losses and sample weights of the debiasing methods (formulas: docs/methods.md).

LWBC (Kim et al., 2022), as its official code computes them:

- bootstrap sets: member m trains on ``set_size * C`` indices drawn with replacement from
  the whole training set, once (``bootstrap_masks``: the in-bag indicator, (M, N));
- weight of a sample: ``w = 1 / (share of members that predict its label + alpha)``;
- main loss: ``loss_scale * mean_b(w_b * CE(tau * g(x_b), y_b))``;
- committee loss: ``sum_m mean_{in-bag b} CE(tau * f_m(x_b), y_b)``; after warm-up
  ``(1 - lambda) *`` that ``+ lambda * tau_kd^2 * sum_m mean_{b, c}(KL_bc * out-of-bag_mb)``
  with ``KL_bc = p_bc (log p_bc - log q_mbc)``, ``p = softmax(tau g / tau_kd)`` (the main
  classifier, no gradient) and ``q_m = softmax(tau f_m / tau_kd)``. The mean runs over all
  B x C entries, the masked (in-bag) zeros included, as in the official code.

LfF (Nam et al., 2020): the generalised CE of the biased model (the official
``CE * p_y^q * q``, whose gradient is q times the paper's GCE), per-sample loss EMAs
normalised by their class maximum, and the
weight ``L_B / (L_B + L_D)``. GroupDRO (Sagawa et al., 2020): exponentiated-gradient group
weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bootstrap_masks(
    num_samples: int, num_classes: int, members: int, set_size: int, generator: torch.Generator
) -> torch.Tensor:
    """(M, N) bool: sample n is in member m's bootstrap set (drawn once, with replacement,
    ``set_size * num_classes`` indices per member)."""
    draws = torch.randint(num_samples, (members, set_size * num_classes), generator=generator)
    mask = torch.zeros(members, num_samples, dtype=torch.bool)
    return mask.scatter_(1, draws, True)


def committee_agreement(member_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) share of the M members whose prediction is the label; logits (M, B, C)."""
    return (member_logits.argmax(dim=2) == labels[None]).float().mean(dim=0)


def lwbc_weights(agreement: torch.Tensor, alpha: float) -> torch.Tensor:
    """LWBC's sample weight 1 / (agreement + alpha): 1/alpha when no member is right."""
    return 1.0 / (agreement + alpha)


def in_bag_ce(
    member_logits: torch.Tensor, labels: torch.Tensor, in_bag: torch.Tensor
) -> torch.Tensor:
    """Sum over members of each member's mean CE over its in-bag samples of the batch
    (members without one in the batch add 0). logits (M, B, C), in_bag (M, B) bool."""
    M = member_logits.shape[0]
    ce = F.cross_entropy(member_logits.flatten(0, 1), labels.repeat(M), reduction="none").view_as(
        in_bag
    )
    mask = in_bag.float()
    count = mask.sum(dim=1)
    per_member = (ce * mask).sum(dim=1) / count.clamp(min=1.0)
    return per_member.sum()


def out_of_bag_kd(
    member_logits: torch.Tensor,
    main_logits: torch.Tensor,
    in_bag: torch.Tensor,
    kd_temperature: float,
) -> torch.Tensor:
    """Sum over members of ``tau_kd^2 * mean_{b,c}(KL(main || member)_bc * out-of-bag)``
    (the masked zeros in the mean, as the official code). main_logits (B, C) carry no
    gradient."""
    p = F.softmax(main_logits.detach() / kd_temperature, dim=1)[None]  # (1, B, C)
    log_q = F.log_softmax(member_logits / kd_temperature, dim=2)  # (M, B, C)
    kl = torch.xlogy(p, p) - p * log_q  # p log p - p log q, 0 where p = 0
    kl = kl * (~in_bag)[..., None].float()
    return kl.mean(dim=(1, 2)).sum() * kd_temperature**2


def committee_loss(
    member_logits: torch.Tensor,
    labels: torch.Tensor,
    in_bag: torch.Tensor,
    main_logits: torch.Tensor | None,
    kd_lambda: float,
    kd_temperature: float,
) -> torch.Tensor:
    """In-bag CE; with ``main_logits`` (after warm-up), ``(1 - lambda) CE + lambda KD``."""
    ce = in_bag_ce(member_logits, labels, in_bag)
    if main_logits is None or kd_lambda <= 0:
        return ce
    kd = out_of_bag_kd(member_logits, main_logits, in_bag, kd_temperature)
    return (1.0 - kd_lambda) * ce + kd_lambda * kd


def generalized_ce(logits: torch.Tensor, labels: torch.Tensor, q: float) -> torch.Tensor:
    """(B,) LfF's generalised CE in its official form: ``CE * p_y^q * q`` with p_y
    detached. Its gradient is q times that of the paper's (1 - p_y^q) / q (a constant
    factor on the biased head's step); we reproduce the official code."""
    p_y = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1).detach()
    return F.cross_entropy(logits, labels, reduction="none") * p_y**q * q


class LossEMA(nn.Module):
    """Per-sample exponential moving average of a loss (LfF): the first update of a sample
    sets its value, later ones ``v <- a v + (1 - a) loss``."""

    labels: torch.Tensor
    value: torch.Tensor
    seen: torch.Tensor

    def __init__(self, labels: torch.Tensor, num_classes: int, alpha: float) -> None:
        super().__init__()
        self.alpha, self.num_classes = alpha, num_classes
        self.register_buffer("labels", labels.clone())
        self.register_buffer("value", torch.zeros(len(labels)))
        self.register_buffer("seen", torch.zeros(len(labels)))

    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        a = self.alpha
        self.value[index] = a * self.value[index] + (1.0 - a * self.seen[index]) * loss
        self.seen[index] = 1.0

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        """The EMAs of ``index`` divided by the largest EMA of their class."""
        class_max = torch.zeros(self.num_classes, device=self.value.device)
        class_max = class_max.scatter_reduce(0, self.labels, self.value, "amax")
        return self.value[index] / class_max[self.labels[index]].clamp(min=1e-12)


def lff_weights(ema_b: LossEMA, ema_d: LossEMA, index: torch.Tensor) -> torch.Tensor:
    """LfF's relative difficulty ``L_B / (L_B + L_D)`` of the samples ``index``."""
    lb, ld = ema_b.normalized(index), ema_d.normalized(index)
    return lb / (lb + ld + 1e-8)


def group_dro_update(
    q: torch.Tensor, group_losses: torch.Tensor, present: torch.Tensor, step_size: float
) -> torch.Tensor:
    """GroupDRO's exponentiated-gradient step: ``q_g <- q_g exp(eta L_g)`` for the groups
    in the batch (absent groups have loss 0: unchanged before normalising), normalised."""
    q = q * torch.exp(step_size * group_losses.detach() * present.float())
    return q / q.sum()
