"""The registry of acquisition strategies: one explicit dict, name -> constructor.

``get_strategy(name, **params)`` builds one (``active.strategy`` and
``active.strategy_params`` in the config). The strategies themselves live in modules by
family: ``uncertainty`` (pixel scores, class balancing, MulActSeg, RIPU), ``diversity``
(core-set, BADGE), ``domain`` (AADA, CLUE, EADA, LAMDA) and ``adaptive`` (adaptive
superpixels); what every strategy is made of is in ``base``. To add one, write its class
(see the README's "Add a strategy") and add a line here.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alseg.acquisition.adaptive import AdaptiveSizeBalancedBvSB
from alseg.acquisition.base import (
    BatchOutputs,
    PoolStats,
    RandomStrategy,
    RegionStats,
    Rows,
    Selection,
    Stats,
    Strategy,
)
from alseg.acquisition.coverage import ProbCoverStrategy, TypiClustStrategy
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

__all__ = [
    "STRATEGIES",
    "Schedule",
    "build_schedule",
    "get_strategy",
    "strategy_names",
    "BatchOutputs",
    "PoolStats",
    "RegionStats",
    "Rows",
    "Selection",
    "Stats",
    "Strategy",
]


def _pixel(score: str) -> Callable[..., Strategy]:
    return functools.partial(PixelScoreStrategy, score)


def _powerbald(mc_samples: int = 8, power: float = 1.0) -> BALDStrategy:
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
    "typiclust": TypiClustStrategy,
    "probcover": ProbCoverStrategy,
}


@dataclass(frozen=True)
class Schedule:
    """The strategy of every selection: ``at(0)`` chooses round 0's set, ``at(r)`` round
    r's; the last one repeats. ``active.strategy=NAME`` is ``[random, NAME]`` (round 0 is
    random); ``active.strategy=[typiclust,bvsb]``: typiclust chooses round 0's set, bvsb the
    rest."""

    steps: tuple[Strategy, ...]

    def at(self, r: int) -> Strategy:
        return self.steps[min(r, len(self.steps) - 1)]

    @property
    def name(self) -> str:
        names = [s.name for s in self.steps]
        return names[-1] if names[0] == "random" and len(names) == 2 else "+".join(names)


def strategy_names(value: Any) -> list[str]:
    """``active.strategy`` as a list of names (a single name: one)."""
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def build_schedule(value: Any, params: dict[str, Any]) -> Schedule:
    """The schedule of ``active.strategy`` with ``active.strategy_params``: for one name its
    parameters; for a list, keys named after one of its strategies hold that strategy's
    parameters (``strategy_params.typiclust.k_nn=10``), the others go to every strategy of
    the list that takes them (one that none takes is an error).

    Raises:
        ValueError: an unknown name or parameter, or round 0 chosen by a strategy that needs
        a trained model.
    """
    names = strategy_names(value)
    if isinstance(value, str):
        return Schedule((RandomStrategy(), get_strategy(value, **params)))
    shared = {k: v for k, v in params.items() if k not in names}
    takes = {n: set(_parameter_names(STRATEGIES[n])) for n in names if n in STRATEGIES}
    for key in shared:
        if not any(key in t for t in takes.values()):
            raise ValueError(
                f"unknown parameter {key!r}: no strategy of {names} takes it (give a "
                "strategy's own parameters as strategy_params.<name>.<key>)"
            )
    steps = tuple(
        get_strategy(
            n,
            **{k: v for k, v in shared.items() if k in takes.get(n, ())},
            **dict(params.get(n) or {}),
        )
        for n in names
    )
    first = steps[0]
    if first.requires_model and not getattr(first, "fresh_model", False):
        raise ValueError(
            f"active.strategy[0]={names[0]} would choose round 0's set, before any model is "
            "trained; start the schedule with random, or typiclust / probcover on a "
            "pre-trained encoder (embedding=pretrained)"
        )
    return Schedule(steps)


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
    _check_parameters(name, STRATEGIES[name], params)
    try:
        return STRATEGIES[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters {params} for strategy {name!r}: {e}") from e


def _parameter_names(make: Callable[..., Strategy]) -> list[str]:
    """The keyword parameters of a strategy constructor (what strategy_params may set)."""
    bound = make.args if isinstance(make, functools.partial) else ()
    target = make.func if isinstance(make, functools.partial) else make
    sig = inspect.signature(target)  # a class's: without self
    return [p for p in list(sig.parameters)[len(bound) :] if p not in ("args", "kwargs")]


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_parameters(name: str, make: Callable[..., Strategy], params: dict[str, Any]) -> None:
    """Each of ``params`` is a parameter of the strategy's constructor, of its annotated type
    (an int is a number; null where the annotation allows None); raises ValueError naming
    the key, the value and what is valid."""
    target = make.func if isinstance(make, functools.partial) else make
    hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)  # type: ignore[misc]
    valid = _parameter_names(make)
    for key, value in params.items():
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} of strategy {name!r}; valid: {', '.join(valid)}"
            )
        allowed = _types(hints.get(key))
        if allowed is None or (value is None and type(None) in allowed):
            continue
        ok = any(
            isinstance(value, t) and not (isinstance(value, bool) and t is not bool)
            for t in allowed
            if t is not type(None)
        ) or (float in allowed and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            words = " or ".join(_WORDS.get(t, t.__name__) for t in allowed)
            raise ValueError(
                f"active.strategy_params.{key}={value!r} is not valid for strategy {name!r}: "
                f"{words.replace('NoneType', 'null')}"
            )


def _types(hint: Any) -> tuple[type, ...] | None:
    """The plain types an annotation admits (None: not checked)."""
    if hint is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        parts = typing.get_args(hint)
        return parts if all(isinstance(p, type) for p in parts) else None
    return (hint,) if hint in _WORDS else None
