"""Classifier heads on frozen features: one MLP, and M of them with stacked weights.

LWBC's heads are ``Linear(D, D/2) - ReLU - Linear(D/2, C)`` without biases (its
``2linear``); its logits are multiplied by a temperature tau outside the head.
``StackedMLP`` holds M such heads as (M, in, out) weight tensors, so that a forward pass
of the whole committee is one batched matrix product per layer, not a loop over members.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def layer_sizes(in_dim: int, hidden: int | None, out_dim: int) -> list[int]:
    return [in_dim, hidden, out_dim] if hidden else [in_dim, out_dim]


def mlp_head(in_dim: int, hidden: int | None, out_dim: int, bias: bool = False) -> nn.Sequential:
    """Linear - ReLU - Linear (or one Linear with ``hidden=None``)."""
    sizes = layer_sizes(in_dim, hidden, out_dim)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b, bias=bias))
    return nn.Sequential(*layers)


class StackedMLP(nn.Module):
    """M MLP heads evaluated together: ``forward(x)`` (B, D) -> (M, B, C).

    Each member is initialised as ``nn.Linear`` initialises its layers (uniform in
    +-1/sqrt(fan_in)), from the module's generator, so a committee is reproducible
    under ``torch.manual_seed``.
    """

    def __init__(
        self, members: int, in_dim: int, hidden: int | None, out_dim: int, bias: bool = False
    ) -> None:
        super().__init__()
        sizes = layer_sizes(in_dim, hidden, out_dim)
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(members, a, b).uniform_(-bound, bound)))
            if bias:
                self.biases.append(nn.Parameter(torch.empty(members, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0)  # (1, B, D): broadcast over members in the first product
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            h = torch.matmul(h, w)  # (M, B, out)
            if len(self.biases):
                h = h + self.biases[i]
            if i < last:
                h = torch.relu(h)
        return h

    def member(self, m: int) -> nn.Sequential:
        """Member ``m`` as a stand-alone ``nn.Sequential`` (a copy of its weights)."""
        sizes = [self.weights[0].shape[1]] + [w.shape[2] for w in self.weights]
        hidden = sizes[1] if len(sizes) == 3 else None
        head = mlp_head(sizes[0], hidden, sizes[-1], bias=len(self.biases) > 0)
        linears = [layer for layer in head if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for i, layer in enumerate(linears):
                layer.weight.copy_(self.weights[i][m].T)
                if layer.bias is not None:
                    layer.bias.copy_(self.biases[i][m, 0])
        return head
