"""Prices come from a static table of estimates, never from the network; the pool's own
figures override them; spot prices are unknown unless given."""

from __future__ import annotations

import pytest

from tests.console.providers.helpers import DUMMY, REGION
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.aws_prices import ON_DEMAND_USD_PER_HOUR, PriceTable


async def test_prices_are_estimates_from_the_table_without_a_call(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    assert await provider.price_per_hour("p5.48xlarge", spot=False) == 98.32
    assert await provider.price_per_hour("g5.xlarge", spot=False) == 1.006
    assert await provider.price_per_hour("p5.48xlarge", spot=True) is None
    assert await provider.price_per_hour("x9.made-up", spot=False) is None
    assert ec2.requests() == []


async def test_the_callers_prices_win() -> None:
    provider = AwsProvider(
        REGION,
        endpoint_url="http://127.0.0.1:9",
        credentials=DUMMY,
        prices={"p5.48xlarge": 55.04, "p6-b200.48xlarge": 113.93},
        spot_prices={"p5.48xlarge": 30.0},
    )
    assert await provider.price_per_hour("p5.48xlarge", spot=False) == 55.04
    assert await provider.price_per_hour("p6-b200.48xlarge", spot=False) == 113.93
    assert await provider.price_per_hour("p5.48xlarge", spot=True) == 30.0
    assert await provider.price_per_hour("g5.xlarge", spot=False) == 1.006  # the table still


@pytest.mark.parametrize("price", [-1.0, float("nan")])
def test_a_price_below_zero_or_not_a_number_is_refused(price: float) -> None:
    with pytest.raises(ValueError, match=r"g5\.xlarge"):
        PriceTable({"g5.xlarge": price})


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        ON_DEMAND_USD_PER_HOUR["p5.48xlarge"] = 0.0  # type: ignore[index]
