"""History rings: order, wrap-around, gaps as NaN, GPUs that come and go, fixed memory."""

from __future__ import annotations

import math
import tracemalloc

import pytest

from tidectl.console.history import GPU_SERIES, NODE_SERIES, NodeHistory


def node_row(value: float | None) -> tuple[float | None, ...]:
    return (value, None, 2.0, 3.0, 4.0)


def gpu_row(base: float) -> tuple[float, ...]:
    return (base, base + 1, base + 2, base + 3)


def same(a: list[float], b: list[float]) -> bool:
    """Equal, NaN equal to NaN (a gap is a gap)."""
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True)
    )


def test_empty_history_reads_empty() -> None:
    history = NodeHistory(5)
    assert len(history) == 0
    assert history.times() == []
    assert history.node_series("gpu_util_pct") == []
    assert history.gpu_series(0, "util_pct") == []
    assert history.nbytes == 0


def test_series_read_oldest_first_and_wrap() -> None:
    history = NodeHistory(4)
    for i in range(6):
        history.append(100.0 + i, node_row(float(i)), {0: gpu_row(10.0 * i)})
    assert len(history) == 4
    assert history.times() == [102.0, 103.0, 104.0, 105.0]
    assert history.node_series("gpu_util_pct") == [2.0, 3.0, 4.0, 5.0]
    assert history.gpu_series(0, "util_pct") == [20.0, 30.0, 40.0, 50.0]
    assert history.gpu_series(0, "mem_used_bytes") == [23.0, 33.0, 43.0, 53.0]


def test_missing_values_are_nan_gaps() -> None:
    history = NodeHistory(3)
    history.append(1.0, node_row(None), {})
    assert math.isnan(history.node_series("gpu_util_pct")[0])
    assert math.isnan(history.node_series("ib_rx_bytes_s")[0])
    assert history.node_series("nic_tx_bytes_s") == [4.0]


def test_gpu_that_disappears_leaves_a_gap_and_a_new_one_gets_a_past_of_gaps() -> None:
    history = NodeHistory(5)
    history.append(1.0, node_row(1.0), {0: gpu_row(1.0), 1: gpu_row(2.0)})
    history.append(2.0, node_row(1.0), {0: gpu_row(1.5)})  # GPU 1 fell off the bus
    history.append(3.0, node_row(1.0), {0: gpu_row(1.75), 1: gpu_row(2.25), 5: gpu_row(9.0)})
    assert history.gpus == [0, 1, 5]
    assert same(history.gpu_series(1, "util_pct"), [2.0, math.nan, 2.25])
    assert same(history.gpu_series(5, "temp_c"), [math.nan, math.nan, 10.0])
    assert history.gpu_series(0, "util_pct") == [1.0, 1.5, 1.75]
    # The node-wide columns survived the rebuild for the new GPU.
    assert history.node_series("nic_rx_bytes_s") == [3.0, 3.0, 3.0]


def test_float32_keeps_large_byte_counts_to_seven_digits() -> None:
    history = NodeHistory(2)
    history.append(1.0, (None, 24_113_474_048.0, None, None, None), {})
    assert history.node_series("ib_rx_bytes_s")[0] == pytest.approx(24_113_474_048.0, rel=1e-7)


def test_resize_keeps_the_newest() -> None:
    history = NodeHistory(5)
    for i in range(7):
        history.append(float(i), node_row(float(i)), {0: gpu_row(float(i))})
    history.resize(3)
    assert history.capacity == 3
    assert history.times() == [4.0, 5.0, 6.0]
    assert history.gpu_series(0, "util_pct") == [4.0, 5.0, 6.0]
    history.append(7.0, node_row(7.0), {0: gpu_row(7.0)})
    assert history.node_series("gpu_util_pct") == [5.0, 6.0, 7.0]
    history.resize(6)
    history.append(8.0, node_row(8.0), {})
    assert history.times() == [5.0, 6.0, 7.0, 8.0]
    assert same(history.gpu_series(0, "util_pct"), [5.0, 6.0, 7.0, math.nan])


def test_resize_before_any_sample() -> None:
    history = NodeHistory(5)
    history.resize(2)
    for i in range(3):
        history.append(float(i), node_row(float(i)), {})
    assert history.times() == [1.0, 2.0]


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        NodeHistory(0)
    history = NodeHistory(2)
    with pytest.raises(ValueError, match="5 values"):
        history.append(1.0, (1.0, 2.0), {})
    with pytest.raises(KeyError):
        history.node_series("no_such_series")


def test_memory_is_allocated_once_and_never_grows() -> None:
    """An 8-GPU node: 37 float32 columns and a float64 time per row, whatever its age."""
    capacity = 600
    history = NodeHistory(capacity)
    gpus = {i: gpu_row(float(i)) for i in range(8)}
    history.append(0.0, node_row(1.0), gpus)
    columns = len(NODE_SERIES) + 8 * len(GPU_SERIES)
    assert columns == 37
    expected = capacity * (columns * 4 + 8)
    assert history.nbytes == expected
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1, 2 * capacity):
            history.append(float(i), node_row(1.0), gpus)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert history.nbytes == expected
    assert len(history) == capacity
    assert grown < 4096, f"appending {2 * capacity} rows grew memory by {grown} bytes"


def test_gpus_land_in_their_columns_whatever_the_order_they_come_in() -> None:
    history = NodeHistory(4)
    history.append(1.0, node_row(1.0), {0: gpu_row(10.0), 1: gpu_row(20.0)})
    history.append(2.0, node_row(2.0), {1: gpu_row(21.0), 0: gpu_row(11.0)})  # swapped
    history.append(3.0, node_row(3.0), {0: gpu_row(12.0), 1: gpu_row(22.0)})
    assert history.gpu_series(0, "util_pct") == [10.0, 11.0, 12.0]
    assert history.gpu_series(1, "mem_used_bytes") == [23.0, 24.0, 25.0]
    assert history.node_series("gpu_util_pct") == [1.0, 2.0, 3.0]


def test_rows_of_the_wrong_width_are_cut_or_padded_and_never_shift_columns() -> None:
    history = NodeHistory(4)
    history.append(1.0, node_row(1.0), {0: gpu_row(10.0), 1: gpu_row(20.0)})
    # Five values then three: the same total as two right rows, in the wrong places.
    history.append(2.0, node_row(2.0), {0: (11.0, 12.0, 13.0, 14.0, 99.0), 1: (21.0, 22.0, 23.0)})
    assert history.gpu_series(0, "mem_used_bytes") == [13.0, 14.0]
    assert history.gpu_series(1, "util_pct") == [20.0, 21.0]
    assert same(history.gpu_series(1, "mem_used_bytes"), [23.0, math.nan])


def test_missing_and_huge_values_in_a_row_of_known_gpus() -> None:
    history = NodeHistory(3)
    history.append(1.0, node_row(1.0), {0: gpu_row(1.0)})
    history.append(2.0, (None, 1e39, 2.0, 3.0, 4.0), {0: (None, 5.0, 6.0, 7.0)})
    assert math.isnan(history.node_series("gpu_util_pct")[-1])
    assert history.node_series("ib_rx_bytes_s")[-1] == math.inf  # beyond float32
    assert same(history.gpu_series(0, "util_pct"), [1.0, math.nan])
    assert history.gpu_series(0, "temp_c") == [2.0, 5.0]
