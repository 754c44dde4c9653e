"""``[store]`` and ``[audit]``: where the lifecycle store and the audit log live.

    [store]
    path = "/var/lib/tidectl/onprem-a.sqlite3"   # default: under the user's data directory

A relative path is relative to cluster.toml's folder. The file need not exist (the first
burst or drain creates it), but its folder's parent chain must be creatable by this user.
"""

from __future__ import annotations

from tidectl.console.config.model import AuditSettings, StoreSettings
from tidectl.console.config.readers import resolve_path
from tidectl.console.config.table import Table

__all__ = ["read_audit", "read_store"]


def read_store(table: Table | None) -> StoreSettings:
    if table is None:
        return StoreSettings()
    text = table.string("path", None, example='path = "/var/lib/tidectl/cluster.sqlite3"')
    table.finish()
    if text is None:
        return StoreSettings()
    path = resolve_path(table, "path", text)
    if path.is_dir():
        raise table.error("path", f"[store] path {path} is a folder; name a file in it")
    return StoreSettings(path=path)


def read_audit(table: Table | None) -> AuditSettings:
    """``[audit] path``: the audit log's file (default: beside the store)."""
    if table is None:
        return AuditSettings()
    text = table.string("path", None, example='path = "/var/log/tidectl/audit.jsonl"')
    table.finish()
    if text is None:
        return AuditSettings()
    path = resolve_path(table, "path", text)
    if path.is_dir():
        raise table.error("path", f"[audit] path {path} is a folder; name a file in it")
    return AuditSettings(path=path)
