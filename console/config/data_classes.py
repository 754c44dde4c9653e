"""``[[data_classes]]``: where each kind of data may be processed (data sovereignty).

    [[data_classes]]
    name = "pii"
    regions = ["eu-west-1", "eu-central-1"]   # "*": anywhere

    [[pools]]
    name = "h100-east"
    region = "us-east-1"
    data_class = "public"                     # what its bursts carry unless they name one

A burst carries a data class (``tidectl burst --data-class``, else its pool's); one into a
region its class does not allow is refused before any provider call. With classes declared, a
burst with none is refused too: deny by default. Without ``[[data_classes]]``, no rule applies.
"""

from __future__ import annotations

import re
from typing import Final

from tidectl.console.config.model import DataClass, PoolSpec
from tidectl.console.config.table import Table

__all__ = ["check_pool_classes", "read_data_classes"]

_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def read_data_classes(tables: list[Table]) -> tuple[DataClass, ...]:
    classes: list[DataClass] = []
    for table in tables:
        name = table.required_string("name", example='name = "pii"')
        if _NAME.fullmatch(name) is None:
            raise table.error(
                "name",
                f'data class name "{name}" must start with a letter and hold only lower-case '
                "letters, digits, - and _, at most 32",
            )
        if any(c.name == name for c in classes):
            raise table.error("name", f'data class "{name}" is defined twice; define it once')
        regions = table.list_of("regions", str)
        if not regions:
            raise table.error(
                None,
                f'data class "{name}" needs regions, where it may be processed, like '
                'regions = ["eu-west-1"] (or ["*"] for anywhere)',
            )
        table.finish()
        classes.append(DataClass(name, tuple(dict.fromkeys(regions))))
    return tuple(classes)


def check_pool_classes(
    pools: tuple[PoolSpec, ...], classes: tuple[DataClass, ...], pool_tables: list[Table]
) -> None:
    """Every pool's ``data_class`` names a declared class."""
    known = {c.name for c in classes}
    for pool, table in zip(pools, pool_tables, strict=True):
        if pool.data_class is not None and pool.data_class not in known:
            listed = ", ".join(sorted(known)) or "none are declared"
            raise table.error(
                "data_class",
                f'pool "{pool.name}" names data class "{pool.data_class}", which no '
                f"[[data_classes]] defines ({listed})",
            )
