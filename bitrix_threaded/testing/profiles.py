"""Cost profiles: how long the fake portal pretends each command and request takes.

A command's processing time is ``base + per_record * records returned +
per_offset_row * rows skipped by an offset + per_counted_row * rows counted
for total``. Each HTTP request adds one ``round_trip``. Commands inside one
batch run one after another; separate requests run in parallel.

Profiles:

- ``instant``: never sleeps and leaves limits off by default, but still
  computes the realistic cost so the operating-time window fills up;
- ``realistic``: sleeps the modelled time; offsets and counts are expensive
  (a deep ``start=`` page costs far more than a cursor page);
- ``light``: as realistic, with offsets and counts 10x cheaper.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping, Union

__all__ = ["CostProfile", "PROFILES", "resolve_profile"]

_COEFFICIENTS = ("base", "per_record", "per_offset_row", "per_counted_row", "round_trip")


@dataclasses.dataclass(frozen=True)
class CostProfile:
    """An immutable set of cost coefficients, in seconds (before the time scale)."""

    name: str
    base: float
    per_record: float
    per_offset_row: float
    per_counted_row: float
    round_trip: float
    sleeps: bool
    limits: bool

    def __post_init__(self) -> None:
        for field in _COEFFICIENTS:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"cost {field} must be a number, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"cost {field} must be >= 0, got {value!r}")

    def command_seconds(self, records: int = 0, skipped: int = 0, counted: int = 0) -> float:
        """Modelled processing time of one command."""
        return (self.base + self.per_record * records + self.per_offset_row * skipped
                + self.per_counted_row * counted)

    def with_costs(self, **costs: Any) -> "CostProfile":
        """A copy with some coefficients replaced; unknown names raise TypeError."""
        unknown = set(costs) - set(_COEFFICIENTS)
        if unknown:
            raise TypeError(f"unknown cost coefficient(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **costs)


_REALISTIC = CostProfile(
    name="realistic", base=0.02, per_record=0.0004, per_offset_row=0.00002,
    per_counted_row=0.000002, round_trip=0.03, sleeps=True, limits=True,
)

PROFILES: Mapping[str, CostProfile] = MappingProxyType({
    "instant": dataclasses.replace(_REALISTIC, name="instant", sleeps=False, limits=False),
    "realistic": _REALISTIC,
    "light": dataclasses.replace(
        _REALISTIC, name="light", per_offset_row=0.000002, per_counted_row=0.0000002),
})


def resolve_profile(profile: Union[str, CostProfile]) -> CostProfile:
    """Return the profile named ``profile`` (or ``profile`` itself if already one).

    Raises ValueError for an unknown name, TypeError for anything else.
    """
    if isinstance(profile, CostProfile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a name or a CostProfile, not {type(profile).__name__}")
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown profile {profile!r}; choose one of {', '.join(sorted(PROFILES))}"
        ) from None
