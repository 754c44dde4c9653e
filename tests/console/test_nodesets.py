"""Node sets: folding, expanding and grouping names the way Slurm and clush -b do."""

from __future__ import annotations

import pytest

from tidectl.console.nodesets import NodeSetError, count, expand, fold, group


def test_fold_keeps_zero_padding_and_gaps() -> None:
    names = [f"gpu{i:03d}" for i in range(1, 61)] + ["gpu062"]
    assert fold(names) == "gpu[001-060,062]"


def test_fold_mixes_prefixes_and_dimensions() -> None:
    folded = fold(["login1", "gpu002", "gpu001", "rack1-gpu01", "rack2-gpu01"])
    assert folded == "gpu[001-002],login1,rack[1-2]-gpu01"


def test_fold_of_nothing_is_empty() -> None:
    assert fold([]) == ""
    assert expand("") == []


def test_expand_inverts_fold() -> None:
    names = [f"gpu{i:03d}" for i in (1, 2, 3, 7, 9, 10)]
    assert expand(fold(names)) == names
    assert expand("gpu[001-003]") == ["gpu001", "gpu002", "gpu003"]
    assert count("gpu[001-128],login[1-2]") == 130


def test_group_syntax_is_a_plain_name_not_a_lookup() -> None:
    # "@rack1" would otherwise read this machine's groups.conf.
    assert expand("@rack1") == ["@rack1"]


def test_bad_pattern_raises_a_sentence() -> None:
    with pytest.raises(NodeSetError, match=r"cannot read node set 'gpu\[001-'.*bracket"):
        expand("gpu[001-")


def test_group_folds_equal_keys_largest_first_like_clush() -> None:
    by_key = {f"gpu{i:03d}": "ok" for i in range(1, 64)}
    by_key["gpu064"] = "XID 79"
    by_key["gpu010"] = "full disk"
    del by_key["gpu011"]
    rows = group(by_key)
    assert rows == [
        ("gpu[001-009,012-063]", "ok"),
        ("gpu010", "full disk"),
        ("gpu064", "XID 79"),
    ]


def test_group_ties_ordered_by_natural_node_order() -> None:
    # gpu9 sorts before gpu10 in node set order, though not as a string.
    rows = group({"gpu10": ("a", 1), "gpu9": ("b", 2), "gpu11": ("c", 3)})
    assert [nodes for nodes, _ in rows] == ["gpu9", "gpu10", "gpu11"]
    assert rows[0][1] == ("b", 2)


def test_group_of_nothing() -> None:
    assert group({}) == []
