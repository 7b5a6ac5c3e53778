"""The registry of acquisition strategies: one explicit dict, name -> constructor.

``get_strategy(name, **params)`` builds one (``active.strategy`` and
``active.strategy_params`` in the config). The strategies themselves live in modules by
family: ``uncertainty`` (pixel scores, class balancing, MulActSeg, RIPU), ``diversity``
(core-set, BADGE), ``domain`` (AADA, CLUE, EADA, LAMDA) and ``adaptive`` (adaptive
superpixels); what every strategy is made of is in ``base``. To add one, write its class
(see the README's "Add a strategy") and add a line here.
"""

from __future__ import annotations

from collections.abc import Callable

from alseg.acquisition.adaptive import AdaptiveSizeBalancedBvSB
from alseg.acquisition.base import BatchOutputs, RandomStrategy, Selection, Stats, Strategy
from alseg.acquisition.diversity import BADGEStrategy, CoresetStrategy
from alseg.acquisition.domain import AADAStrategy, CLUEStrategy, EADAStrategy, LAMDAStrategy
from alseg.acquisition.uncertainty import (
    BALDStrategy,
    ClassBalancedBvSB,
    PixelBalancedBvSB,
    PixelScoreStrategy,
    RIPUStrategy,
    SizeBalancedBvSB,
)

__all__ = ["STRATEGIES", "get_strategy", "BatchOutputs", "Selection", "Stats", "Strategy"]


def _pixel(score: str) -> Callable[..., Strategy]:
    return lambda **kw: PixelScoreStrategy(score, **kw)


def _powerbald(mc_samples: int = 8, power: float = 1.0) -> Strategy:
    s = BALDStrategy(mc_samples, power)
    s.name = "powerbald"
    return s


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy,
    "entropy": _pixel("entropy"),
    "margin": _pixel("margin"),
    "bvsb": _pixel("bvsb"),
    "least_confidence": _pixel("least_confidence"),
    "bald": BALDStrategy,
    "powerbald": _powerbald,
    "classbal": ClassBalancedBvSB,
    "pixbal": PixelBalancedBvSB,
    "sizebal": SizeBalancedBvSB,
    "adaptive_sizebal": AdaptiveSizeBalancedBvSB,
    "ripu": RIPUStrategy,
    "coreset": CoresetStrategy,
    "badge": BADGEStrategy,
    "aada": AADAStrategy,
    "clue": CLUEStrategy,
    "eada": EADAStrategy,
    "lamda": LAMDAStrategy,
}


class UnknownStrategyError(KeyError, ValueError):
    """An ``active.strategy`` that is not in ``STRATEGIES``; the message lists the valid ones
    (a KeyError, as smp's registries raise, and a ValueError, as every bad argument here)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy registered as ``name``; unknown names list the valid ones
    (``UnknownStrategyError``, a KeyError), bad parameters raise ValueError."""
    if name not in STRATEGIES:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}"
        )
    try:
        return STRATEGIES[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters {params} for strategy {name!r}: {e}") from e
