"""Every package folder is shipped under its tidectl.* name, with its typing marker."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]  # type: ignore[no-any-return]


def test_every_package_folder_is_listed_under_its_mapped_name() -> None:
    config = _config()
    mapping: dict[str, str] = config["package-dir"]  # type: ignore[assignment]
    listed = set(config["packages"])  # type: ignore[call-overload]
    expected = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join([name, *relative]))
    missing = expected - listed
    assert not missing, f"add these to [tool.setuptools] packages: {sorted(missing)}"
    assert listed <= expected, f"listed but not on disk: {sorted(listed - expected)}"


def test_each_top_level_package_is_typed() -> None:
    for folder in _config()["package-dir"].values():  # type: ignore[attr-defined]
        assert (ROOT / folder / "py.typed").is_file(), folder
