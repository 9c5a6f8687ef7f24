"""What a command will cost: the operating window's estimates of server seconds.

Pure functions over a :class:`~bitrix_threaded.limiter_store.MethodState`; they run
inside the window's store transactions. Costs are kept per *cost class* (commands of
one kind: offset pages of similar depth, see :func:`~bitrix_threaded.paging.cost_class`)
as the highest cost of the class's last 50-100 reports, and method-wide as the highest
recent cost decaying with time: commands of one method can differ tenfold (deep offset
pages), and an average would let the first wave of requests overshoot the budget. The
decay follows time, not reports, because one batch reply brings fifty of them.
"""
from __future__ import annotations

from typing import Mapping, Optional

from .limiter_store import MethodState
from .paging import class_depth

__all__ = ["estimate_cost", "learn_cost", "margin"]

#: Reports per generation of a cost class's running maximum.
CLASS_GENERATION = 50
#: Weight of one report in the running spread (an exponential average).
SPREAD_WEIGHT = 0.05
#: The margin is this many spreads, at most :data:`MAX_MARGIN` of the estimate.
SPREAD_MARGINS = 3.0
MAX_MARGIN = 0.5


def learn_cost(state: MethodState, cost: float, cost_class: int, now: float,
               half_life: float) -> None:
    """Take one command's reported ``cost`` (seconds) of ``cost_class`` in, at ``now``."""
    known = state.cost
    if known is None:
        state.cost = cost
    else:
        age = max(0.0, now - state.cost_at)
        state.cost = max(cost, known * 0.5 ** (age / max(half_life, 1e-9)))
    state.cost_at = now
    recent = state.class_costs.setdefault(cost_class, [0.0, 0.0, 0])
    estimate = max(recent[0], recent[1])
    if estimate > 0:
        # How far costs run above what was expected of them: the margin to keep,
        # learned from their spread rather than taken from their last value.
        surprise = max(0.0, cost / estimate - 1.0)
        state.spread += SPREAD_WEIGHT * (surprise - state.spread)
    if recent[2] >= CLASS_GENERATION:
        recent[:] = [0.0, recent[0], 0]
    recent[0] = max(recent[0], cost)
    recent[2] += 1


def estimate_cost(state: MethodState, classes: Mapping[int, int]) -> Optional[float]:
    """Estimated seconds of commands (class -> count); None when nothing is known.

    A class never reported is placed on the line between the reported classes around
    it (by the depth of their deepest pages), or estimated at the nearest reported
    class above it, or else at the highest cost seen. Then :func:`margin` is added.
    """
    if state.cost is None:
        return None
    known = state.class_costs
    total = 0.0
    for cost_class, n in classes.items():
        recent = known.get(cost_class)
        if recent is not None:
            total += n * max(recent[0], recent[1])
            continue
        above = [c for c in known if c > cost_class]
        if not above:  # deeper than anything seen: the highest cost seen
            total += n * max([state.cost] + [max(r[0], r[1]) for r in known.values()])
            continue
        upper = min(above)
        high = max(known[upper][0], known[upper][1])
        below = [c for c in known if 0 < c < cost_class]
        if not below:  # the nearest known class above bounds this one
            total += n * high
            continue
        lower = max(below)
        low = max(known[lower][0], known[lower][1])
        # Between two known classes: the cost grows with the depth, about linearly
        # (an offset scan), so draw the line through the deepest pages of both.
        depth, d_low, d_high = (class_depth(c) for c in (cost_class, lower, upper))
        share = (depth - d_low) / (d_high - d_low)
        total += n * min(high, max(low, low + (high - low) * share))
    return total * (1.0 + margin(state))


def margin(state: MethodState) -> float:
    """The share added to estimates for the spread of this method's costs."""
    return min(MAX_MARGIN, SPREAD_MARGINS * state.spread)
