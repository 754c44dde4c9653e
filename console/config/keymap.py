"""``[console]``: how the full-screen console behaves; for now its keymap.

    [console]
    keymap = { "fleet.fold" = "z", "app.quit" = "q,ctrl+q" }

Keys are binding ids (``?`` in the console lists them); values are Textual key names,
comma-separated for several. An id the console does not have is an error, not a no-op.
"""

from __future__ import annotations

import re
from typing import Final

from tidectl.console.config.errors import as_toml, did_you_mean
from tidectl.console.config.model import ConsoleSettings
from tidectl.console.config.table import Table
from tidectl.console.view.keys import BINDING_IDS

#: One key name: letters, digits, "+" for modifiers, "_" as in "question_mark".
_KEY: Final = re.compile(r"[A-Za-z0-9_+\-]+")


def read_console(table: Table | None) -> ConsoleSettings:
    if table is None:
        return ConsoleSettings()
    keymap_table = table.table("keymap")
    keymap: dict[str, str] = {}
    if keymap_table is not None:
        for binding_id, keys in keymap_table.data.items():
            if binding_id not in BINDING_IDS:
                hint = did_you_mean(binding_id, BINDING_IDS) or (
                    "; press ? in the console for the list of binding ids"
                )
                raise keymap_table.error(
                    binding_id, f'no key binding has the id "{binding_id}"{hint}'
                )
            if not isinstance(keys, str) or not all(
                _KEY.fullmatch(key.strip()) for key in keys.split(",")
            ):
                raise keymap_table.error(
                    binding_id,
                    f"keymap.{binding_id} is {as_toml(keys)}; give key names as a string, "
                    'several separated by commas, like "z" or "ctrl+f,f5"',
                )
            keymap[binding_id] = ",".join(key.strip() for key in keys.split(","))
            keymap_table.asked.append(binding_id)
    table.finish()
    return ConsoleSettings(keymap=keymap)
