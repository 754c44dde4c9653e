"""Builds the single-file agent that the console uploads to bare nodes.

The archive is reproducible: the same sources give the same bytes (sorted entries, fixed
timestamps and modes), so its SHA-256 names it and a re-deploy of an unchanged agent uploads
nothing. It holds only this package's sources and runs with ``python3 agent.pyz stream``.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import List, Tuple

_SHEBANG = b"#!/usr/bin/env python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = b"import sys\nfrom tidectl.agents.cli import main\nsys.exit(main())\n"
_PACKAGE_INIT = b'"""tidectl, as shipped to nodes: the agent only."""\n'


def _sources() -> List[Tuple[str, bytes]]:
    """(archive name, bytes) for every .py file of this package, sorted."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    entries = []
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for filename in sorted(files):
            if not filename.endswith(".py"):
                continue
            path = os.path.join(folder, filename)
            relative = os.path.relpath(path, package_dir).replace(os.sep, "/")
            with open(path, "rb") as handle:
                entries.append(("tidectl/agents/" + relative, handle.read()))
    return sorted(entries)


def archive_bytes() -> bytes:
    """The zipapp's content, deterministic for a given set of sources."""
    import io

    buffer = io.BytesIO()
    buffer.write(_SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        members = [("__main__.py", _MAIN), ("tidectl/__init__.py", _PACKAGE_INIT)]
        for name, data in members + _sources():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def build(out_path: str) -> str:
    """Write the zipapp to ``out_path`` (executable) and return its SHA-256 in hex."""
    data = archive_bytes()
    tmp_path = out_path + ".tmp"
    with open(tmp_path, "wb") as handle:
        handle.write(data)
    os.chmod(tmp_path, 0o755)
    os.replace(tmp_path, out_path)  # a reader never sees half an agent
    return hashlib.sha256(data).hexdigest()
