"""Short history rings of one node, for sparklines: ten minutes at 1 Hz, a few kB a series.

A thousand nodes by 600 samples by ~37 series must stay small, so a node's history is **one**
preallocated ``array('f')`` (4 bytes a value) laid out row by row — one row a sample, one
column a series — plus one ``array('d')`` of sample times. Appending a row is one C call
(``struct.pack_into`` straight into the ring); reading a series is a strided slice. A missing
value (a GPU that dropped out, a rate across a counter reset) is stored as NaN, so every series
stays aligned with the times and a sparkline shows the gap where it was.

Memory is allocated in full by the first append and never grows, whatever the node's age.
"""

from __future__ import annotations

import functools
import math
import struct
from array import array
from collections.abc import Mapping, Sequence

NAN = math.nan

#: Node-wide series, in column order.
NODE_SERIES: tuple[str, ...] = (
    "gpu_util_pct",  # mean over the node's GPUs
    "ib_rx_bytes_s",  # all IB ports together
    "ib_tx_bytes_s",
    "nic_rx_bytes_s",  # all NICs together
    "nic_tx_bytes_s",
)
#: Per-GPU series, in column order within a GPU's block.
GPU_SERIES: tuple[str, ...] = ("util_pct", "temp_c", "power_w", "mem_used_bytes")

_NODE_COLUMN = {name: i for i, name in enumerate(NODE_SERIES)}
_GPU_COLUMN = {name: i for i, name in enumerate(GPU_SERIES)}

Row = Sequence[float | None]


#: Bytes of one value in the rings.
_ITEM = array("f").itemsize


@functools.cache
def _row_format(columns: int) -> struct.Struct:
    """One row of ``columns`` float32 values, laid out as ``array('f')`` holds them.

    Shared by every history of that width, as are the layouts below: a thousand nodes'
    appends then read one object, in the CPU's cache, instead of one each.
    """
    return struct.Struct(f"@{columns}f")


_LAYOUTS: dict[tuple[int, ...], tuple[int, ...]] = {}


def _shared(layout: tuple[int, ...]) -> tuple[int, ...]:
    return _LAYOUTS.setdefault(layout, layout)


class NodeHistory:
    """The last ``capacity`` samples of one node, oldest first when read."""

    __slots__ = (
        "_capacity",
        "_columns",
        "_count",
        "_gpu_layout",
        "_gpu_offset",
        "_next",
        "_pack",
        "_rows",
        "_times",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a history holds at least one sample, not {capacity}")
        self._capacity = capacity
        self._gpu_offset: dict[int, int] = {}  # GPU index → its first column
        self._gpu_layout: tuple[int, ...] = ()  # GPU indices in column order
        self._columns = len(NODE_SERIES)
        self._pack = _row_format(self._columns)
        self._rows = array("f")
        self._times = array("d")
        self._next = 0  # the row the next sample goes into
        self._count = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return self._count

    @property
    def gpus(self) -> list[int]:
        """GPU indices that have a series, in order."""
        return sorted(self._gpu_offset)

    def append(self, at: float, node: Row, gpus: Mapping[int, Row]) -> None:
        """One sample: ``node`` in ``NODE_SERIES`` order, each GPU's row in ``GPU_SERIES`` order.

        A GPU seen before but absent now gets NaN; a GPU never seen before adds columns.
        """
        if len(node) != len(NODE_SERIES):
            raise ValueError(f"a node row has {len(NODE_SERIES)} values, not {len(node)}")
        values = self._same_gpus(node, gpus)
        if values is None:
            values = self._place(node, gpus)
        if not self._times:
            self._rows = array("f", [NAN]) * (self._capacity * self._columns)
            self._times = array("d", [NAN]) * self._capacity
        try:
            # Straight into the ring, in C.
            self._pack.pack_into(self._rows, self._next * self._columns * _ITEM, *values)
        except (struct.error, OverflowError):
            # A missing value (None), or one beyond float32 (stored as inf): rare, so not
            # looked for in the common case.
            start = self._next * self._columns
            self._rows[start : start + self._columns] = array(
                "f", [NAN if value is None else value for value in values]
            )
        self._times[self._next] = at
        self._next = (self._next + 1) % self._capacity
        self._count = min(self._count + 1, self._capacity)

    def _same_gpus(self, node: Row, gpus: Mapping[int, Row]) -> list[float | None] | None:
        """The row's values when the GPUs are those of the columns, in their order (every
        sample but the first): the node's values, then each GPU's; else None."""
        if tuple(gpus) != self._gpu_layout:
            return None
        width = len(GPU_SERIES)
        values = list(node)
        for row in gpus.values():
            if len(row) != width:
                return None
            values += row
        return values

    def _place(self, node: Row, gpus: Mapping[int, Row]) -> list[float | None]:
        """The row's values by column: new GPUs get columns, absent ones NaN."""
        for index in gpus:
            if index not in self._gpu_offset:
                self._add_gpu(index)
        values: list[float | None] = [NAN] * self._columns
        values[: len(node)] = node
        for index, row in gpus.items():
            offset = self._gpu_offset[index]
            for i, value in enumerate(row[: len(GPU_SERIES)]):
                values[offset + i] = value
        return values

    def _add_gpu(self, index: int) -> None:
        # Rare (the first sample, or a GPU that came back at a new index): rebuild the rows
        # with a new block of columns, NaN in the past.
        self._gpu_offset[index] = self._columns
        self._gpu_layout = _shared((*self._gpu_layout, index))
        old_columns, self._columns = self._columns, self._columns + len(GPU_SERIES)
        self._pack = _row_format(self._columns)
        if not self._times:
            return
        rows = array("f", [NAN]) * (self._capacity * self._columns)
        for r in range(self._capacity):
            rows[r * self._columns : r * self._columns + old_columns] = self._rows[
                r * old_columns : (r + 1) * old_columns
            ]
        self._rows = rows

    def _ordered(self, values: Sequence[float]) -> list[float]:
        if self._count < self._capacity:
            return list(values[: self._count])
        return list(values[self._next :]) + list(values[: self._next])

    def times(self) -> list[float]:
        """When each sample was received (the fleet's clock), oldest first."""
        return self._ordered(self._times)

    def _column(self, column: int) -> list[float]:
        if not self._times:
            return []
        return self._ordered(self._rows[column :: self._columns])

    def node_series(self, name: str) -> list[float]:
        """One of ``NODE_SERIES``, oldest first; NaN where there was no value."""
        return self._column(_NODE_COLUMN[name])

    def gpu_series(self, index: int, name: str) -> list[float]:
        """One of ``GPU_SERIES`` for GPU ``index``, oldest first; [] for a GPU never seen."""
        offset = self._gpu_offset.get(index)
        if offset is None:
            return []
        return self._column(offset + _GPU_COLUMN[name])

    def resize(self, capacity: int) -> None:
        """Hold ``capacity`` samples from now on, keeping the newest ones."""
        if capacity < 1:
            raise ValueError(f"a history holds at least one sample, not {capacity}")
        if capacity == self._capacity:
            return
        if not self._times:
            self._capacity = capacity
            return
        keep = min(self._count, capacity)
        order = [(self._next - keep + i) % self._capacity for i in range(keep)]
        rows = array("f", [NAN]) * (capacity * self._columns)
        times = array("d", [NAN]) * capacity
        width = self._columns
        for new, old in enumerate(order):
            rows[new * width : (new + 1) * width] = self._rows[old * width : (old + 1) * width]
            times[new] = self._times[old]
        self._rows, self._times, self._capacity = rows, times, capacity
        self._count = keep
        self._next = keep % capacity

    @property
    def nbytes(self) -> int:
        """Bytes held by the rings (for the memory budget's tests and diagnostics)."""
        return self._rows.itemsize * len(self._rows) + self._times.itemsize * len(self._times)
