"""Data-filtering scores for instruction data, as the papers and their official code define
them. Pure functions on token losses, probabilities, embeddings and gradients; the model
passes that produce those inputs are separate (docs/methods.md, section J).

* Perplexity under a reference model, keep bands (Marion et al. 2023, "When Less is More";
  Ankner et al. 2024, "Perplexed by Perplexity"): ppl = exp(mean token loss of the example);
  keep the lowest, middle or highest ``keep`` share.
* IFD (Li et al. 2024, "From Quantity to Quality", official ``tianyi-lab/Cherry_LLM``,
  ``cherry_seletion/data_by_IFD.py``): the mean loss of the response's tokens with the
  instruction before it, divided by their mean loss after only the response prefix;
  examples with IFD > 1 are dropped and the highest IFDs of the rest are kept (``keep`` is a
  share of the survivors, as ``--sample_rate`` is there).
* Token EL2N: the mean over the response's tokens of ||p - onehot(target)||_2 (Paul et
  al.'s EL2N per token, averaged over the example).
* SemDeDup (Abbas et al. 2023, official ``facebookresearch/SemDeDup``, ``semdedup.py`` and
  ``clustering/sort_clusters.py``): k-means on normalised embeddings; inside a cluster the
  items sorted by cosine distance to the centroid, farthest first (``keep_hard``); an item
  is removed when its cosine similarity to an earlier item of its cluster exceeds 1 - eps.
* LESS (Xia et al. 2024, official ``princeton-nlp/LESS``,
  ``less/data_selection/collect_grad_reps.py`` and ``matching.py``): a training example's
  gradient after one Adam step from the warm-up optimiser's moments,
  m' / sqrt(v' + eps) with m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2 (no bias
  correction, eps inside the root), projected with a Rademacher matrix and L2-normalised;
  validation gradients are plain (SGD) gradients, projected and normalised the same way;
  the score is the checkpoint-weighted (weights summing to 1) cosine to each validation
  example, averaged over a task's validation examples, maximised over the tasks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

BANDS = ("low", "middle", "high")


def mean_token_loss(token_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of (B, T) token losses over the tokens where ``mask`` is true (the
    response's); an example without such a token is an error."""
    m = mask.to(token_loss.dtype)
    n = m.sum(1)
    if bool((n == 0).any()):
        raise ValueError(
            f"examples {torch.nonzero(n == 0).flatten().tolist()} have no scored token"
        )
    return (token_loss * m).sum(1) / n


def perplexity(mean_loss: torch.Tensor) -> torch.Tensor:
    return torch.exp(mean_loss)


def _check_keep(keep: float) -> None:
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must lie in (0, 1]")


def band_keep(score: torch.Tensor, keep: float, band: str) -> torch.Tensor:
    """Indices of the ``keep`` share of examples with the lowest, middle or highest score
    (ties: lower index first); ``middle`` drops an equal share at each end."""
    _check_keep(keep)
    if band not in BANDS:
        raise ValueError(f"band={band!r} is not valid; choose one of: {', '.join(BANDS)}")
    n = len(score)
    k = max(1, round(keep * n))
    order = torch.from_numpy(np.lexsort((np.arange(n), score.double().numpy())))  # ascending
    start = {"low": 0, "high": n - k, "middle": (n - k) // 2}[band]
    return order[start : start + k].sort().values


def ifd(loss_conditioned: torch.Tensor, loss_alone: torch.Tensor) -> torch.Tensor:
    """Instruction-following difficulty: mean response loss with the instruction / without."""
    return loss_conditioned / loss_alone


def ifd_keep(score: torch.Tensor, keep: float) -> torch.Tensor:
    """Indices kept by IFD: drop IFD > 1 (and undefined scores), keep the highest ``keep``
    share of the rest (the official script's order: ascending sort, take the last)."""
    _check_keep(keep)
    ok = int((torch.isfinite(score) & (score <= 1)).sum())
    return ifd_top(score, int(ok * keep))


def ifd_top(score: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest IFDs at most 1 (fewer if fewer survive), sorted indices."""
    ok = torch.nonzero(torch.isfinite(score) & (score <= 1)).flatten()
    order = ok[torch.from_numpy(np.lexsort((ok.numpy(), score[ok].double().numpy())))]
    return order[len(order) - min(k, len(order)) :].sort().values


def token_el2n(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over masked tokens of ||p - onehot(target)||_2; probs (B, T, V), target (B, T)."""
    onehot = F.one_hot(target.clamp_min(0), probs.shape[-1]).to(probs.dtype)
    return mean_token_loss((probs - onehot).norm(dim=-1), mask)


def semdedup_similarity(
    emb: torch.Tensor, cluster: torch.Tensor, centroids: torch.Tensor
) -> torch.Tensor:
    """(N,) each example's largest cosine similarity to an earlier example of its cluster in
    SemDeDup's order (farthest from the centroid first; ties by index); 0 for the first.
    ``emb`` (N, D) and ``centroids`` (K, D) are normalised here; ``cluster`` (N,) ids."""
    x = F.normalize(emb.float(), dim=1)
    c = F.normalize(centroids.float(), dim=1)
    out = torch.zeros(len(x))
    for k in torch.unique(cluster).tolist():
        idx = torch.nonzero(cluster == k).flatten()
        if len(idx) < 2:
            continue
        dist = 1 - x[idx] @ c[k]
        order = idx[torch.from_numpy(np.lexsort((idx.numpy(), -dist.double().numpy())))]
        sim = torch.triu(x[order] @ x[order].T, diagonal=1)
        out[order] = sim.max(dim=0).values
    return out


def semdedup(
    emb: torch.Tensor, cluster: torch.Tensor, centroids: torch.Tensor, eps: float
) -> torch.Tensor:
    """(N,) bool: the examples SemDeDup removes at threshold ``eps`` (module docstring):
    those whose ``semdedup_similarity`` exceeds 1 - eps. Keeping a share instead of a
    threshold removes the largest similarities first (the same rule at the eps that fits)."""
    if not 0 <= eps < 1:
        raise ValueError(f"eps={eps} must lie in [0, 1)")
    return semdedup_similarity(emb, cluster, centroids) > 1 - eps


def adam_gradient(
    g: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.Tensor:
    """LESS's Adam-preconditioned gradient: one Adam moment update, no bias correction."""
    m = betas[0] * exp_avg + (1 - betas[0]) * g
    v = betas[1] * exp_avg_sq + (1 - betas[1]) * g**2
    return m / torch.sqrt(v + eps)


def rademacher(dim_in: int, dim_out: int, seed: int = 0) -> torch.Tensor:
    """(dim_in, dim_out) random +-1 / sqrt(dim_out) matrix from a fixed generator."""
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (dim_in, dim_out), generator=g, dtype=torch.int8)
    return (signs.float() * 2 - 1) / math.sqrt(dim_out)


def less_scores(
    train: list[torch.Tensor],
    val: list[torch.Tensor],
    weights: list[float],
    val_task: torch.Tensor,
) -> torch.Tensor:
    """(N,) LESS influence: ``train[i]`` (N, d) and ``val[i]`` (M, d) are checkpoint i's
    projected gradients (normalised here), ``weights`` the checkpoints' weights (the mean
    learning rate of each epoch; renormalised to sum 1), ``val_task`` (M,) each validation
    example's task. Sum_i w_i cos(train, val), mean over a task's examples, max over tasks."""
    if not (len(train) == len(val) == len(weights)) or not train:
        raise ValueError("train, val and weights need one entry per checkpoint")
    w = torch.tensor(weights, dtype=torch.float64)
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"checkpoint weights {weights} must be >= 0 with a positive sum")
    w = w / w.sum()
    score = sum(
        float(wi) * (F.normalize(t.double(), dim=1) @ F.normalize(v.double(), dim=1).T)
        for wi, t, v in zip(w, train, val)
    )
    assert isinstance(score, torch.Tensor)
    tasks = torch.unique(val_task)
    per_task = torch.stack([score[:, val_task == t].mean(1) for t in tasks], dim=1)
    return per_task.max(dim=1).values
