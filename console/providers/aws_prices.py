"""Estimated EC2 prices, so a burst can show the cost it adds without a network call.

These are ESTIMATES: AWS's published on-demand list prices for Linux in us-east-1 (N. Virginia)
as of 2024, in USD per instance-hour. Other regions differ by roughly ±10-30 %, and AWS cut
P4 and P5 on-demand prices (by up to about 45 %) in June 2025, so the P4/P5 figures here are
on the high side. Spot prices move hourly and per zone, so none are guessed: a spot price is
unknown unless the caller supplies one. The pool's ``price_per_hour`` in cluster.toml, passed
as an override, always wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

ON_DEMAND_USD_PER_HOUR: Final[Mapping[str, float]] = MappingProxyType(
    {
        "p5.48xlarge": 98.32,  # 8x H100 80 GB
        "p4de.24xlarge": 40.97,  # 8x A100 80 GB
        "p4d.24xlarge": 32.77,  # 8x A100 40 GB
        "p3.16xlarge": 24.48,  # 8x V100
        "p3.8xlarge": 12.24,  # 4x V100
        "p3.2xlarge": 3.06,  # 1x V100
        "g5.48xlarge": 16.288,  # 8x A10G
        "g5.12xlarge": 5.672,  # 4x A10G
        "g5.xlarge": 1.006,  # 1x A10G
        "g4dn.12xlarge": 3.912,  # 4x T4
        "g4dn.xlarge": 0.526,  # 1x T4
    }
)


class PriceTable:
    """Prices per instance type: the caller's overrides first, then the estimates above."""

    def __init__(
        self,
        on_demand: Mapping[str, float] | None = None,
        spot: Mapping[str, float] | None = None,
    ) -> None:
        self._on_demand = {**ON_DEMAND_USD_PER_HOUR, **(on_demand or {})}
        self._spot = dict(spot or {})
        for kind, table in (("on-demand", self._on_demand), ("spot", self._spot)):
            for instance_type, price in table.items():
                if not price >= 0:  # also refuses NaN
                    raise ValueError(
                        f"the {kind} price for {instance_type} is {price}; a price per hour "
                        "must be a number of dollars >= 0."
                    )

    def per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return (self._spot if spot else self._on_demand).get(instance_type)
