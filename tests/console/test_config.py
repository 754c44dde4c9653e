"""cluster.toml: what loads, what it means, and the file:line:sentence of everything refused."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidectl.console.config.loader import ConfigError, load_config, parse_config
from tidectl.console.config.model import AgentSettings, ClusterConfig, SshSettings
from tidectl.console.thresholds import DEFAULT_XID_CRITICAL, HealthThresholds

REPO = Path(__file__).resolve().parents[2]

# Five lines every file below starts with; node tables begin on line 6.
HEAD = """\
[cluster]
name = "test"
[ssh]
user = "tidectl"
known_hosts = "known_hosts"
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder with the files the texts name; the working directory is elsewhere."""
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


def load(folder: Path, text: str) -> ClusterConfig:
    return parse_config(text, folder / "cluster.toml")


def refuse(folder: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, folder / "cluster.toml")
    return caught.value


# ---------------------------------------------------------------------------------------------
# What loads


def test_the_example_file_loads_with_its_values(folder: Path) -> None:
    text = (REPO / "examples" / "cluster.toml").read_text()
    (folder / "cluster.toml").write_text(text)

    config = load_config(folder / "cluster.toml")

    assert config.name == "onprem-a"
    assert config.path == folder / "cluster.toml"
    assert config.ssh == SshSettings(
        user="tidectl",
        identity_file=folder / "keys" / "id_ed25519",
        known_hosts=folder / "known_hosts",
        jump_host=None,
        port=22,
        connect_timeout_s=10.0,
        login_timeout_s=10.0,
        keepalive_interval_s=5.0,
        keepalive_count_max=3,
        fanout=64,
        reconnect_min_s=1.0,
        reconnect_max_s=60.0,
    )
    assert config.agent == AgentSettings(1.0, "python3", ".cache/tidectl", "all")
    assert [(site.name, site.description) for site in config.sites] == [
        ("dc1", "Main data centre, hall 2"),
        ("dc2", "Overflow racks, building B"),
    ]
    assert len(config.nodes) == 128 + 2 + 32 + 4
    gpu001 = config.node("gpu001")
    assert (gpu001.address, gpu001.port, gpu001.site, gpu001.user) == (
        "gpu001.mgmt.example",
        22,
        "dc1",
        "tidectl",
    )
    assert gpu001.labels == {"rack": "r12", "partition": "train"}
    assert config.node("login2").user == "ops"
    assert config.node("login2").address == "login2"
    assert config.node("gpu129").port == 2222
    assert config.node("gpu129").address == "gpu129.dc2.example"
    assert config.node("gpu160").site == "dc2"
    assert [(n.name, n.address, n.port) for n in config.nodes[-4:]] == [
        ("sim001", "127.0.0.1", 24001),
        ("sim002", "127.0.0.1", 24002),
        ("sim003", "127.0.0.1", 24003),
        ("sim004", "127.0.0.1", 24004),
    ]
    assert config.health.gpu_temp_warn_c == 83.0
    assert config.health.gpu_temp_critical_c == 90.0
    assert config.health.xid_critical_codes == (48, 63, 64, 74, 79, 94, 95)
    assert config.health.storage_full_warn_pct == 85.0
    assert config.health.muted_codes == ("net.errors",)
    assert config.health.xid_hold_s == HealthThresholds().xid_hold_s


def test_a_minimal_file_takes_the_models_defaults(folder: Path) -> None:
    config = load(folder, HEAD + '[[nodes]]\nnames = "gpu[1-2]"\n')

    assert config.ssh == SshSettings(
        user="tidectl", identity_file=None, known_hosts=folder / "known_hosts"
    )
    assert config.agent == AgentSettings()
    assert config.health == HealthThresholds()
    assert [site.name for site in config.sites] == ["default"]
    assert [(n.name, n.address, n.port, n.site, n.user, n.labels) for n in config.nodes] == [
        ("gpu1", "gpu1", 22, "default", "tidectl", {}),
        ("gpu2", "gpu2", 22, "default", "tidectl", {}),
    ]


def test_nodes_keep_file_order_and_take_their_sets_settings(folder: Path) -> None:
    config = load(
        folder,
        HEAD
        + 'port = 2200\n[[sites]]\nname = "dc1"\n'
        + '[[nodes]]\nnames = "b[1-2]"\nuser = "ops"\n'
        + '[[nodes]]\nnames = "a1"\nport = 22\nlabels = { rack = "r1" }\n',
    )

    assert [(n.name, n.port, n.user, n.site, n.labels) for n in config.nodes] == [
        ("b1", 2200, "ops", "dc1", {}),
        ("b2", 2200, "ops", "dc1", {}),
        ("a1", 22, "tidectl", "dc1", {"rack": "r1"}),
    ]
    # Each node has its own labels: changing one must not change its neighbours.
    assert config.nodes[0].labels is not config.nodes[1].labels


def test_a_thousand_node_set_expands_quickly_with_port_base_arithmetic(folder: Path) -> None:
    text = (
        HEAD + '[[nodes]]\nnames = "gpu[0001-1000]"\naddress = "10.0.{index}"\nport_base = 24001\n'
    )

    started = time.perf_counter()
    config = load(folder, text)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0, f"1,000 nodes took {elapsed:.2f} s"
    assert len(config.nodes) == 1000
    assert [n.name for n in config.nodes[:2]] == ["gpu0001", "gpu0002"]
    assert config.nodes[-1].name == "gpu1000"
    assert all(node.port == 24001 + index for index, node in enumerate(config.nodes))
    assert config.nodes[999].port == 25000
    assert config.node("gpu0500").address == "10.0.499"


@pytest.mark.parametrize(
    ("pattern", "addresses"),
    [
        ("{name}", ["n8", "n9", "n10"]),
        ("{name}.ib.example", ["n8.ib.example", "n9.ib.example", "n10.ib.example"]),
        ("10.1.0.{index}", ["10.1.0.0", "10.1.0.1", "10.1.0.2"]),
        ("bmc-{index:03d}-{name}", ["bmc-000-n8", "bmc-001-n9", "bmc-002-n10"]),
        ("{{literal}}{name}", ["{literal}n8", "{literal}n9", "{literal}n10"]),
    ],
)
def test_address_placeholders(folder: Path, pattern: str, addresses: list[str]) -> None:
    config = load(folder, HEAD + f'[[nodes]]\nnames = "n[8-10]"\naddress = "{pattern}"\n')

    assert [node.address for node in config.nodes] == addresses


def test_health_overrides_numbers_and_lists(folder: Path) -> None:
    config = load(
        folder,
        HEAD
        + '[[nodes]]\nnames = "a1"\n[health]\ngpu_temp_warn_c = 80\ngpu_temp_critical_c = 88.5\n'
        + "xid_critical_codes = [48, 79]\nxid_ignored_codes = [13]\n"
        + 'muted_codes = ["ib.symbol_errors", "net.errors"]\nstale_after_intervals = 5\n',
    )

    assert config.health == HealthThresholds(
        gpu_temp_warn_c=80.0,
        gpu_temp_critical_c=88.5,
        xid_critical_codes=(48, 79),
        xid_ignored_codes=(13,),
        muted_codes=("ib.symbol_errors", "net.errors"),
        stale_after_intervals=5.0,
    )
    assert isinstance(config.health.gpu_temp_warn_c, float)
    # Fields left out keep their defaults.
    assert config.health.ib_symbol_errors_critical_per_min == 1000.0
    assert HealthThresholds().xid_critical_codes == DEFAULT_XID_CRITICAL


def test_an_empty_health_list_is_allowed(folder: Path) -> None:
    config = load(folder, HEAD + '[[nodes]]\nnames = "a1"\n[health]\nxid_critical_codes = []\n')

    assert config.health.xid_critical_codes == ()


def test_relative_paths_resolve_against_the_files_folder_not_the_working_directory(
    folder: Path,
) -> None:
    (folder / "conf").mkdir()
    text = (
        '[cluster]\nname = "x"\n[ssh]\nuser = "u"\nknown_hosts = "../known_hosts"\n'
        'identity_file = "../keys/id_ed25519"\n[[nodes]]\nnames = "a1"\n'
    )
    (folder / "conf" / "cluster.toml").write_text(text)

    config = load_config(folder / "conf" / "cluster.toml")

    assert config.ssh.known_hosts == folder / "conf" / ".." / "known_hosts"
    assert config.ssh.known_hosts.resolve() == (folder / "known_hosts").resolve()
    assert config.ssh.identity_file is not None
    assert config.ssh.identity_file.resolve() == (folder / "keys" / "id_ed25519").resolve()


def test_a_relative_config_path_gives_absolute_paths_and_keeps_its_name_in_errors(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    (folder / "cluster.toml").write_text(HEAD + '[[nodes]]\nnames = "a1"\n')
    (folder / "bad.toml").write_text(HEAD + "prot = 22\n")

    config = load_config("cluster.toml")
    with pytest.raises(ConfigError) as caught:
        load_config("bad.toml")

    assert config.path == folder / "cluster.toml"
    assert config.ssh.known_hosts == folder / "known_hosts"
    assert config.ssh.known_hosts.is_absolute()
    assert str(caught.value) == 'bad.toml:6: unknown key "prot" in [ssh]; did you mean "port"?'


def test_home_and_absolute_paths(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(folder / "keys"))
    absolute = folder / "known_hosts"
    config = load(
        folder,
        f'[cluster]\nname = "x"\n[ssh]\nuser = "u"\nknown_hosts = "{absolute}"\n'
        'identity_file = "~/id_ed25519"\n[[nodes]]\nnames = "a1"\n',
    )

    assert config.ssh.known_hosts == absolute
    assert config.ssh.identity_file == folder / "keys" / "id_ed25519"


def test_probe_lists_are_checked_and_put_in_record_order(folder: Path) -> None:
    config = load(folder, HEAD + '[agent]\nprobes = "ib, gpu"\n[[nodes]]\nnames = "a1"\n')

    assert config.agent.probes == "gpu,ib"


def test_jump_host_forms(folder: Path) -> None:
    for jump in ("bastion", "ops@bastion", "ops@bastion.example:2222", "bastion:22"):
        text = HEAD + f'jump_host = "{jump}"\n[[nodes]]\nnames = "a1"\n'
        assert load(folder, text).ssh.jump_host == jump


def test_nodes_as_inline_tables_load_too(folder: Path) -> None:
    config = load(folder, 'nodes = [{ names = "a[1-2]", port = 2022 }]\n' + HEAD)

    assert [(n.name, n.port) for n in config.nodes] == [("a1", 2022), ("a2", 2022)]


# ---------------------------------------------------------------------------------------------
# The error itself


def test_config_error_carries_path_line_and_message() -> None:
    error = ConfigError("cluster.toml", 14, "something is wrong; fix it")
    whole = ConfigError(Path("/etc/tidectl/cluster.toml"), None, "no such file")

    assert (error.path, error.line, error.message) == (
        Path("cluster.toml"),
        14,
        "something is wrong; fix it",
    )
    assert str(error) == "cluster.toml:14: something is wrong; fix it"
    assert str(whole) == "/etc/tidectl/cluster.toml: no such file"


def test_the_issues_example_message_word_for_word(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    text = (
        HEAD
        + "\n# dc1\n"  # lines 6-7
        + '[[sites]]\nname = "dc1"\n'  # 8-9
        + '[[nodes]]\nnames = "gpu[001-128]"\n\n'  # 10-12
        + '[[nodes]]\nadress = "{name}.ib"\nnames = "login1"\n'  # 13-15
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("cluster.toml"))

    assert str(caught.value) == (
        'cluster.toml:14: unknown key "adress" in [[nodes]] #2; did you mean "address"?'
    )
    assert caught.value.line == 14


def test_load_config_on_missing_folder_and_non_utf8_files(folder: Path) -> None:
    (folder / "latin1.toml").write_bytes(b'[cluster]\nname = "caf\xe9"\n')

    with pytest.raises(ConfigError) as missing:
        load_config(folder / "nope.toml")
    with pytest.raises(ConfigError) as directory:
        load_config(folder / "keys")
    with pytest.raises(ConfigError) as latin1:
        load_config(folder / "latin1.toml")

    assert missing.value.line is None
    assert "no such file" in missing.value.message
    assert "folder" in directory.value.message
    assert latin1.value.line == 2
    assert "UTF-8" in latin1.value.message


# ---------------------------------------------------------------------------------------------
# Refused, with the line


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[cluster]\nname = "x"\n[ssh]\nport = \n', 4, "not valid TOML (invalid value"),
        ('[cluster]\nname = "x\n', 2, "a string must end on the line"),
        ('[cluster]\nname = "x"\nname = "y"\n', 3, "given twice"),
        ("[cluster]\n[cluster]\n", 2, "given twice"),
        ('[cluster]\nname = "x"\n\n[nodes\n', 4, "not valid TOML"),
        ("x = [1,\n2,\n", 3, "the file ends in the middle of something"),
    ],
)
def test_toml_syntax_errors_keep_tomllibs_line(
    folder: Path, text: str, line: int, words: str
) -> None:
    error = refuse(folder, text)

    assert error.line == line
    assert words in error.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '[cluster]\nname = "x"\nnmae = "y"\n',
            3,
            'unknown key "nmae" in [cluster]; did you mean "name"?',
        ),
        (
            HEAD + "conect_timeout_s = 3\n",
            6,
            'unknown key "conect_timeout_s" in [ssh]; did you mean "connect_timeout_s"?',
        ),
        (
            HEAD + '[agent]\nintervals = 2\n[[nodes]]\nnames = "a1"\n',
            7,
            'unknown key "intervals" in [agent]; did you mean "interval_s"?',
        ),
        (
            HEAD + '[[sites]]\nname = "a"\n[[sites]]\nname = "b"\ndescr = "x"\n',
            10,
            'unknown key "descr" in [[sites]] #2; did you mean "description"?',
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[health]\ngpu_temp_warn = 80\n',
            9,
            'unknown key "gpu_temp_warn" in [health]; did you mean "gpu_temp_warn_c"?',
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\ncolour = "red"\n',
            8,
            'unknown key "colour" in [[nodes]] #1; [[nodes]] #1 takes names, site, address, '
            "port, port_base, user, labels",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[[nodes]]\nnames = "a2"\n[shh]\nport = 22\n',
            10,
            "unknown table [shh]; did you mean [ssh]?",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[[pool]]\nname = "x"\n',
            8,
            "unknown table [[pool]]; did you mean [[pools]]?",
        ),
        (
            'title = "x"\n' + HEAD,
            1,
            'unknown key "title" outside any table; the file takes [cluster], [ssh], [agent], '
            "[[sites]], [[nodes]], [health], [console], [scheduler], [[pools]], [store], "
            "[server], [roles], [[data_classes]], [audit], [[budgets]], [policies], [collector]",
        ),
        # An inline table, and an array of inline tables.
        (
            'nodes = [\n  { names = "a1" },\n  { names = "a2", prot = 1 },\n]\n' + HEAD,
            3,
            'unknown key "prot" in [[nodes]] #2; did you mean "port"?',
        ),
        # A sub-table of the latest [[nodes]] entry.
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[[nodes]]\nnames = "a2"\n[nodes.lables]\nx = "1"\n',
            10,
            'unknown key "lables" in [[nodes]] #2; did you mean "labels"?',
        ),
    ],
)
def test_unknown_keys_name_their_line_and_a_close_match(
    folder: Path, text: str, line: int, message: str
) -> None:
    error = refuse(folder, text)

    assert (error.line, error.message) == (line, message)


def test_the_locator_is_not_fooled_by_strings_comments_and_multi_line_values(
    folder: Path,
) -> None:
    text = (
        HEAD  # 1-5
        + '[[sites]]\nname = "dc1"\n'  # 6-7
        + 'description = """\n[[nodes]]\nadress = 1\n"""\n'  # 8-11: a string, not a table
        + "# [[nodes]]\n"  # 12
        + "[[sites]]\n"  # 13
        + "'name' = 'dc2'  # name = 'x'\n"  # 14
        + "\"description\" = '''a \"quoted\" = 3\n[x]'''\n"  # 15-16
        + '[[nodes]]\nnames = "a1"\nsite = "dc1"\n'  # 17-19: [[nodes]] #1
        + 'labels = { "a.b" = "a \\" [ { tricky", c = "2" }\n'  # 20
        + "[[nodes]]\r\n"  # 21: [[nodes]] #2 (a CRLF line)
        + 'names = "a2"\nsite = "dc1"\n'  # 22-23
        + "labels.rack = [\n  'x',\n  'y',\n]\n"  # 24-27: a label that is a list
    )

    error = refuse(folder, text)

    assert error.line == 24
    assert error.message.startswith("labels.rack must be a string, got a list (in [[nodes]] #2)")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            HEAD + 'port = "22"\n',
            6,
            "port must be an integer, got a string (in [ssh]); write it without quotes: port = 22",
        ),
        (
            HEAD + "port = 22.0\n",
            6,
            "port must be an integer, got a decimal number (in [ssh]); write a whole number: "
            "port = 22",
        ),
        (
            "[cluster]\nname = 42\n",
            2,
            'name must be a string, got an integer (in [cluster]); put it in quotes: name = "42"',
        ),
        (
            HEAD + "fanout = true\n",
            6,
            "fanout must be an integer, got a boolean (in [ssh])",
        ),
        (
            HEAD + '[agent]\ninterval_s = "2.5"\n',
            7,
            "interval_s must be a number, got a string (in [agent]); write it without quotes: "
            "interval_s = 2.5",
        ),
        (
            HEAD + '[[nodes]]\nnames = ["a1", "a2"]\n',
            7,
            "names must be a string, got a list (in [[nodes]] #1)",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\nlabels = { rack = 12 }\n',
            8,
            "labels.rack must be a string, got an integer (in [[nodes]] #1); put it in quotes: "
            'rack = "12"',
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\nlabels = "r12"\n',
            8,
            "labels must be a table, got a string (in [[nodes]] #1)",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[health]\nxid_critical_codes = [\n  48,\n  "79",\n]\n',
            11,
            "xid_critical_codes must be a list of integers, but item 2 is a string (in [health])",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[health]\nxid_critical_codes = 48\n',
            9,
            "xid_critical_codes must be a list of integers, got an integer (in [health]); "
            "write a list: xid_critical_codes = [48]",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[health]\ngpu_temp_warn_c = 1979-05-27\n',
            9,
            "gpu_temp_warn_c must be a number, got a date or time (in [health])",
        ),
        (
            'ssh = 3\n[cluster]\nname = "x"\n',
            1,
            "ssh must be a table, written [ssh] on a line of its own",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a1"\n[[health]]\n',
            8,
            "[health] must be one table, written [health], not a list or [[health]]",
        ),
        (
            HEAD + '[nodes]\nnames = "a1"\n',
            6,
            "nodes is a list of tables: write [[nodes]], with double brackets",
        ),
    ],
)
def test_wrong_types_say_what_was_expected(
    folder: Path, text: str, line: int, message: str
) -> None:
    error = refuse(folder, text)

    assert (error.line, error.message) == (line, message)


NODE = '[[nodes]]\nnames = "a1"\n'


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (HEAD + "port = 0\n", 6, "port must be between 1 and 65535, got 0 (in [ssh])"),
        (HEAD + "port = 65536\n", 6, "port must be between 1 and 65535, got 65536 (in [ssh])"),
        (
            HEAD + "connect_timeout_s = 0\n",
            6,
            "connect_timeout_s must be greater than 0, got 0 (in [ssh])",
        ),
        (
            HEAD + "login_timeout_s = -1.5\n",
            6,
            "login_timeout_s must be greater than 0, got -1.5 (in [ssh])",
        ),
        (
            HEAD + "keepalive_interval_s = 0.0\n",
            6,
            "keepalive_interval_s must be greater than 0, got 0.0 (in [ssh])",
        ),
        (
            HEAD + "keepalive_count_max = 0\n",
            6,
            "keepalive_count_max must be between 1 and 1000, got 0 (in [ssh])",
        ),
        (
            HEAD + "connect_timeout_s = nan\n",
            6,
            "connect_timeout_s must be a finite number, got nan (in [ssh])",
        ),
        (
            HEAD + "reconnect_min_s = inf\n",
            6,
            "reconnect_min_s must be a finite number, got inf (in [ssh])",
        ),
        (HEAD + "fanout = 0\n", 6, "fanout must be between 1 and 4096, got 0 (in [ssh])"),
        (HEAD + "fanout = 4097\n", 6, "fanout must be between 1 and 4096, got 4097 (in [ssh])"),
        (
            HEAD + "reconnect_min_s = 30\nreconnect_max_s = 10\n",
            7,
            "reconnect_max_s (10) must be at least reconnect_min_s (30) (in [ssh]): the backoff "
            "grows from the one to the other",
        ),
        (
            HEAD + 'jump_host = "ops@bastion:99999"\n',
            6,
            'jump_host = "ops@bastion:99999" is not [user@]host[:port] (in [ssh]); write it like '
            '"ops@bastion.example:22" (the port is 1-65535)',
        ),
        (
            HEAD + 'jump_host = "@bastion"\n',
            6,
            'jump_host = "@bastion" is not [user@]host[:port] (in [ssh]); write it like '
            '"ops@bastion.example:22" (the port is 1-65535)',
        ),
        (
            '[cluster]\nname = "x"\n[ssh]\nuser = "me@host"\n',
            4,
            'user = "me@host" is not a login name (in [ssh]); give only the name, without '
            "spaces or @host",
        ),
        (
            '[cluster]\nname = ""\n',
            2,
            'name is empty (in [cluster]); give a value, like name = "onprem-a"',
        ),
        (
            HEAD + "[agent]\ninterval_s = 0.05\n",
            7,
            "interval_s must be between 0.1 and 3600, got 0.05 (in [agent])",
        ),
        (
            HEAD + "[agent]\ninterval_s = 3601\n",
            7,
            "interval_s must be between 0.1 and 3600, got 3601 (in [agent])",
        ),
        (
            HEAD + '[agent]\nprobes = "gpu,ibb"\n',
            7,
            'probes has unknown probe "ibb" (in [agent]); write "all" or some of '
            'host,gpu,ib,storage,net, separated by commas; did you mean "ib"?',
        ),
        (
            HEAD + NODE + "port = 70000\n",
            8,
            "port must be between 1 and 65535, got 70000 (in [[nodes]] #1)",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a[1-10]"\nport_base = 65530\n',
            8,
            "port_base 65530 + 10 nodes runs past port 65535 (in [[nodes]] #1); start at 65526 "
            "or lower",
        ),
        (
            HEAD + '[[nodes]]\nnames = "a[1-10]"\nport = 22\nport_base = 24001\n',
            9,
            "[[nodes]] #1 has both port and port_base; keep port to give every node the same "
            "port, or port_base to number them from it",
        ),
        (
            HEAD + NODE + 'user = "a b"\n',
            8,
            'user = "a b" is not a login name (in [[nodes]] #1); give only the name, without '
            "spaces or @host",
        ),
    ],
)
def test_values_out_of_range(folder: Path, text: str, line: int, message: str) -> None:
    error = refuse(folder, text)

    assert (error.line, error.message) == (line, message)


@pytest.mark.parametrize(
    ("health", "line", "message"),
    [
        (
            "gpu_temp_warn_c = 95\n",
            9,
            "gpu_temp_warn_c (95) must be below gpu_temp_critical_c (92, the default) (in "
            "[health]): a warning comes before the critical state",
        ),
        (
            "storage_full_warn_pct = 90\nstorage_full_critical_pct = 90\n",
            9,
            "storage_full_warn_pct (90) must be below storage_full_critical_pct (90) (in "
            "[health]): a warning comes before the critical state",
        ),
        (
            "ib_symbol_errors_critical_per_min = 5\n",
            9,
            "ib_symbol_errors_warn_per_min (10, the default) must be below "
            "ib_symbol_errors_critical_per_min (5) (in [health]): a warning comes before the "
            "critical state",
        ),
        (
            "storage_full_critical_pct = 101\n",
            9,
            "storage_full_critical_pct must be between 0 and 100, got 101 (in [health])",
        ),
        ("xid_hold_s = -1\n", 9, "xid_hold_s must be at least 0, got -1 (in [health])"),
        (
            "stale_after_intervals = 0.5\n",
            9,
            "stale_after_intervals must be at least 1, got 0.5 (in [health])",
        ),
        (
            "xid_ignored_codes = [13, 79]\n",
            9,
            "XID 79 is both in xid_critical_codes and in xid_ignored_codes (in [health]); "
            "remove it from one of them",
        ),
        (
            'muted_codes = ["gpu.xid", "gpu temp"]\n',
            9,
            'muted_codes has "gpu temp", which is not a finding code (in [health]); codes look '
            'like "gpu.xid" or "ib.port_down"',
        ),
        (
            "xid_critical_codes = [-1]\n",
            9,
            "xid_critical_codes has -1, which is not an XID (in [health]); XIDs are positive",
        ),
    ],
)
def test_health_values_are_checked(folder: Path, health: str, line: int, message: str) -> None:
    error = refuse(folder, HEAD + NODE + "[health]\n" + health)

    assert (error.line, error.message) == (line, message)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            "gpu[3-1]",
            'names = "gpu[3-1]" is not a node set (in [[nodes]] #1): a range goes from high to '
            "low; write it low to high",
        ),
        (
            "gpu[001-1]",
            'names = "gpu[001-1]" is not a node set (in [[nodes]] #1): the ends of a '
            "zero-padded range have different widths; write both ends with the same number of "
            "digits, like 001-128",
        ),
        (
            "gpu[1-4",
            'names = "gpu[1-4" is not a node set (in [[nodes]] #1): a "[" is never closed; '
            'close it with "]"',
        ),
        (
            "gpu[a-b]",
            'names = "gpu[a-b]" is not a node set (in [[nodes]] #1): a range holds something '
            'other than numbers; write ranges like "[001-128]" or "[1,3,5-9]"',
        ),
        (
            "gpu[1-4]!gpu[1-4]",
            'names = "gpu[1-4]!gpu[1-4]" names no nodes (in [[nodes]] #1); give a node set like '
            '"gpu[001-128]"',
        ),
        (
            "@gpus",
            'names = "@gpus" gives "@gpus", which is not a node name (in [[nodes]] #1); node '
            "groups (@group) are not expanded here; list the nodes",
        ),
        (
            "gpu 1",
            'names = "gpu 1" gives "gpu 1", which is not a node name (in [[nodes]] #1); a node '
            'name is letters, digits, "-", "_" and "."',
        ),
    ],
)
def test_bad_node_sets(folder: Path, names: str, message: str) -> None:
    error = refuse(folder, HEAD + f'\n[[nodes]]\nnames = "{names}"\n')

    assert (error.line, error.message) == (8, message)


def test_a_node_set_too_large_is_refused_before_it_is_expanded(folder: Path) -> None:
    started = time.perf_counter()
    huge = refuse(folder, HEAD + '[[nodes]]\nnames = "gpu[1-1000000000]"\n')
    product = refuse(folder, HEAD + '[[nodes]]\nnames = "r[1-1000]n[1-1000]"\n')
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert huge.line == 7
    assert "lists too many nodes" in huge.message
    assert product.message == (
        'names = "r[1-1000]n[1-1000]" names 1,000,000 nodes (in [[nodes]] #1); a file may '
        "define at most 100,000 nodes"
    )


def test_a_node_in_two_sets_names_both_lines(folder: Path) -> None:
    text = (
        HEAD
        + '[[nodes]]\nnames = "gpu[001-010]"\n'  # 6-7
        + '[[nodes]]\nnames = "login1"\n'  # 8-9
        + '[[nodes]]\nsite = "default"\nnames = "gpu[008-012]"\n'  # 10-12
    )

    error = refuse(folder, text)

    assert (error.line, error.message) == (
        12,
        "nodes gpu[008-010] are listed in [[nodes]] #1 (line 7) and again in [[nodes]] #3; "
        'list each node once (a set can leave nodes out: "gpu[001-128]!gpu007")',
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            HEAD + '[[sites]]\nname = "dc1"\n[[sites]]\nname = "dc2"\n' + NODE + 'site = "dc3"\n',
            12,
            'site "dc3" is not defined (in [[nodes]] #1); the file\'s sites are dc1, dc2; did '
            'you mean "dc2"?',
        ),
        (
            HEAD + NODE + 'site = "dc1"\n',
            8,
            'site "dc1" is not defined (in [[nodes]] #1); add a [[sites]] table with name = '
            '"dc1", or remove site',
        ),
        (
            HEAD + '[[sites]]\nname = "dc1"\n[[sites]]\nname = "dc2"\n' + NODE,
            10,
            "[[nodes]] #1 has no site and the file defines 2 (dc1, dc2); add a line like site = "
            '"dc1"',
        ),
        (
            HEAD + '[[sites]]\nname = "dc1"\n[[sites]]\nname = "dc1"\n',
            9,
            'site "dc1" is defined twice (first in [[sites]] #1 (line 7)); give each site its '
            "own name",
        ),
    ],
)
def test_sites(folder: Path, text: str, line: int, message: str) -> None:
    error = refuse(folder, text)

    assert (error.line, error.message) == (line, message)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            "{nam}.ib",
            'address = "{nam}.ib" has an unknown placeholder {nam} (in [[nodes]] #1); the '
            'placeholders are {name} and {index}; did you mean "name"?',
        ),
        (
            "{host}",
            'address = "{host}" has an unknown placeholder {host} (in [[nodes]] #1); the '
            "placeholders are {name} and {index}",
        ),
        (
            "{}",
            'address = "{}" has an unknown placeholder {} (in [[nodes]] #1); the placeholders '
            "are {name} and {index}",
        ),
        (
            "{name.upper}",
            'address = "{name.upper}" has an unknown placeholder {name.upper} (in [[nodes]] #1); '
            "the placeholders are {name} and {index}",
        ),
        (
            "{name",
            'address = "{name" has an unmatched brace (in [[nodes]] #1); placeholders are '
            "{name} and {index}, and a literal brace is written {{ or }}",
        ),
        (
            "{name:d}",
            "address = \"{name:d}\" cannot be filled in for node a1 (Unknown format code 'd' for "
            "object of type 'str') (in [[nodes]] #1); check the format after the colon, as in "
            "{index:03d}",
        ),
        (
            "{name} x",
            'address = "{name} x" gives "a1 x" for node a1, which is not a host name (in '
            "[[nodes]] #1)",
        ),
    ],
)
def test_bad_address_patterns(folder: Path, address: str, message: str) -> None:
    error = refuse(folder, HEAD + f'[[nodes]]\nnames = "a1"\naddress = "{address}"\n')

    assert (error.line, error.message) == (8, message)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, 'the file has no [cluster] table; add [cluster] with name = "onprem-a"'),
        (
            '[cluster]\nname = "x"\n',
            None,
            'the file has no [ssh] table; add [ssh] with user = "..." and known_hosts = '
            '"known_hosts"',
        ),
        (
            "\n[cluster]\n[ssh]\n",
            2,
            '[cluster] is missing "name"; add a line like name = "onprem-a"',
        ),
        (
            '[cluster]\nname = "x"\n[ssh]\nknown_hosts = "known_hosts"\n',
            3,
            '[ssh] is missing "user"; add a line like user = "tidectl"',
        ),
        (
            '[cluster]\nname = "x"\n[ssh]\nuser = "u"\n',
            3,
            '[ssh] is missing "known_hosts"; add a line like known_hosts = "known_hosts"',
        ),
        (
            HEAD,
            None,
            "the file defines no nodes; add at least one [[nodes]] table with a node set, like "
            'names = "gpu[001-128]"',
        ),
        (
            HEAD + "[[nodes]]\nport = 22\n",
            6,
            '[[nodes]] #1 is missing "names"; add a line like names = "gpu[001-128]"',
        ),
        (
            HEAD + '[[sites]]\ndescription = "x"\n',
            6,
            '[[sites]] #1 is missing "name"; add a line like name = "dc1"',
        ),
    ],
)
def test_missing_tables_and_keys(folder: Path, text: str, line: int | None, message: str) -> None:
    error = refuse(folder, text)

    assert (error.line, error.message) == (line, message)


def test_known_hosts_that_does_not_exist_names_the_resolved_path(folder: Path) -> None:
    text = '[cluster]\nname = "x"\n[ssh]\nuser = "u"\nknown_hosts = "conf/known_hosts"\n' + NODE

    error = refuse(folder, text)

    missing = folder / "conf" / "known_hosts"
    assert error.line == 5
    assert error.message == (
        f"known_hosts {missing} does not exist; create it with the nodes' host keys (for "
        f"example ssh-keyscan -H NODE >> {missing}, then compare ssh-keygen -lf {missing} with "
        "fingerprints obtained out of band), or point known_hosts at an existing file"
    )


def test_identity_file_that_does_not_exist_says_how_to_make_one(folder: Path) -> None:
    error = refuse(folder, HEAD + 'identity_file = "keys/id_rsa"\n' + NODE)

    key = folder / "keys" / "id_rsa"
    assert error.line == 6
    assert error.message == (
        f"identity_file {key} does not exist; create a key with ssh-keygen -t ed25519 -f {key} "
        f"and add {key}.pub to ~/.ssh/authorized_keys on the nodes, or remove identity_file to "
        "use ssh-agent and your default keys"
    )


def test_known_hosts_that_is_a_folder(folder: Path) -> None:
    error = refuse(folder, '[cluster]\nname = "x"\n[ssh]\nuser = "u"\nknown_hosts = "keys"\n')

    assert (error.line, error.message) == (
        5,
        f"known_hosts {folder / 'keys'} is a folder; point known_hosts at a file",
    )


def test_a_path_the_system_cannot_look_at(folder: Path) -> None:
    error = refuse(folder, HEAD.replace('"known_hosts"', '"' + "k" * 300 + '"'))

    assert error.line == 5
    assert error.message == (
        f"known_hosts {folder / ('k' * 300)} cannot be looked at (File name too long); "
        "check the path"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_known_hosts_this_user_cannot_read(folder: Path) -> None:
    (folder / "known_hosts").chmod(0)

    error = refuse(folder, HEAD + NODE)

    assert (error.line, error.message) == (
        5,
        f"known_hosts {folder / 'known_hosts'} cannot be read by this user; check its owner and "
        "permissions",
    )


def test_a_number_too_long_for_python_is_a_config_error(folder: Path) -> None:
    error = refuse(folder, HEAD + "port = 1" + "0" * 5000 + "\n")

    assert error.line == 6
    assert "thousands of digits" in error.message


# ---------------------------------------------------------------------------------------------
# The documentation


def _doc_snippets() -> list[tuple[int, str, str | None]]:
    """(line in docs/config.md, toml text, the error the doc shows after it or None)."""
    doc = (REPO / "docs" / "config.md").read_text()
    blocks = list(re.finditer(r"^```(\w*)\n(.*?)^```$", doc, re.MULTILINE | re.DOTALL))
    snippets = []
    for index, block in enumerate(blocks):
        if block.group(1) != "toml":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = None
        if following is not None and following.group(1) == "text":
            between = doc[block.end() : following.start()]
            if between.strip().startswith("Fails"):
                expected = following.group(2).strip()
        snippets.append((doc.count("\n", 0, block.start()) + 1, block.group(2), expected))
    return snippets


def test_the_doc_has_snippets_of_both_kinds() -> None:
    snippets = _doc_snippets()

    assert sum(expected is None for _, _, expected in snippets) >= 5
    assert sum(expected is not None for _, _, expected in snippets) >= 5


def _complete(snippet: str) -> str:
    """A snippet with the tables it leaves out added after it, so its line numbers stand."""
    try:
        present = tomllib.loads(snippet)
    except ValueError:
        return snippet
    missing = ""
    if "cluster" not in present:
        missing += '\n[cluster]\nname = "doc"\n'
    if "ssh" not in present:
        missing += '\n[ssh]\nuser = "tidectl"\nknown_hosts = "known_hosts"\n'
    if "nodes" not in present:
        missing += '\n[[nodes]]\nnames = "doc-node"\n'
    return snippet + missing


@pytest.mark.parametrize(
    ("doc_line", "snippet", "expected"),
    [pytest.param(*snippet, id=f"docs/config.md:{snippet[0]}") for snippet in _doc_snippets()],
)
def test_every_snippet_in_the_doc_does_what_the_doc_says(
    folder: Path, monkeypatch: pytest.MonkeyPatch, doc_line: int, snippet: str, expected: str | None
) -> None:
    monkeypatch.chdir(folder)
    text = _complete(snippet)

    if expected is None:
        config = parse_config(text, Path("cluster.toml"))
        assert config.nodes, f"docs/config.md:{doc_line}"
    else:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, Path("cluster.toml"))
        # The doc's examples live in /srv/lab; this one runs in a temporary folder.
        shown = str(caught.value).replace(str(folder), "/srv/lab")
        assert shown == expected, f"docs/config.md:{doc_line}"


# ---------------------------------------------------------------------------------------------
# Anything at all


# The fixture only provides files that are never written to: sharing it between examples is safe.
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Generating whole documents costs far more than loading them: fewer, to keep the file fast.
FUZZ_DOCUMENTS = settings(FUZZ, max_examples=100)


def _check_outcome(text: str, folder: Path) -> None:
    try:
        config = parse_config(text, folder / "cluster.toml")
    except ConfigError as error:
        assert str(error).startswith(str(folder / "cluster.toml"))
        assert error.message
        if error.line is not None:
            assert 1 <= error.line <= text.count("\n") + 1
    else:
        assert config.nodes
        assert len({node.name for node in config.nodes}) == len(config.nodes)


@FUZZ
@given(text=st.text())
def test_arbitrary_text_raises_only_config_error(folder: Path, text: str) -> None:
    _check_outcome(text, folder)


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    return '"' + "".join(_toml_char(char) for char in text) + '"'


def _toml_char(char: str) -> str:
    if ord(char) < 32 or ord(char) == 127:
        return f"\\u{ord(char):04x}"
    return "\\" + char if char in '"\\' else char


def _toml_value(value: Any) -> str:
    """A Python value as TOML."""
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_string(key)} = {_toml_value(item)}" for key, item in value.items())
        return "{ " + ", ".join(pairs) + " }"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("-nan", "nan")  # "nan", "inf", "-inf" are TOML too
    return json.dumps(value)  # booleans, integers and floats are written alike


_interesting = st.sampled_from(
    [
        "gpu[001-004]",
        "a[1-3],b1",
        "{name}",
        "{index:02d}",
        "known_hosts",
        "all",
        "gpu,ib",
        "dc1",
        "",
        "~",
        "a[1-2]!a1",
    ]
)
_scalars = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.booleans()
    | st.text(max_size=12)
    | _interesting
)
_values = (
    _scalars
    | st.lists(_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=6), _scalars, max_size=2)
)


def _table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    known = st.dictionaries(st.sampled_from(keys), _values, max_size=len(keys))
    stray = st.dictionaries(st.text(min_size=1, max_size=5), _values, max_size=1)
    return st.builds(lambda a, b: {**b, **a}, known, stray)


_documents = st.fixed_dictionaries(
    {
        "cluster": _table(["name"]),
        "ssh": st.builds(
            lambda extra: {"user": "u", "known_hosts": "known_hosts", **extra},
            _table(
                [
                    "user",
                    "port",
                    "fanout",
                    "jump_host",
                    "identity_file",
                    "connect_timeout_s",
                    "reconnect_max_s",
                ]
            ),
        ),
        "nodes": st.lists(
            _table(["names", "site", "address", "port", "port_base", "user", "labels"]),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "agent": _table(["interval_s", "probes", "python"]),
        "sites": st.lists(_table(["name", "description"]), max_size=2),
        "health": _table(
            ["gpu_temp_warn_c", "xid_critical_codes", "muted_codes", "storage_full_warn_pct"]
        ),
    },
)


@FUZZ_DOCUMENTS
@given(document=_documents)
def test_arbitrary_values_in_the_right_places_raise_only_config_error(
    folder: Path, document: dict[str, Any]
) -> None:
    text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in document.items())

    _check_outcome(text, folder)


def test_the_locator_reads_quotes_at_the_end_of_multi_line_strings_and_escapes(
    folder: Path,
) -> None:
    text = (
        HEAD  # 1-5
        + '[[sites]]\nname = "dc1"\n'  # 6-7
        + 'description = """ends in two quotes\\"""""\n'  # 8: the content ends with ""
        + "[[sites]]\n"  # 9
        + "name = 'C:\\dc2\\'\n"  # 10: a literal string ending in a backslash
        + "description = '''\n'''\n"  # 11-12
        + "[[sites]]\nname = 'dc3'\n"  # 13-14
        + 'descripton = "\\\\"\n'  # 15
    )

    error = refuse(folder, text)

    assert (error.line, error.message) == (
        15,
        'unknown key "descripton" in [[sites]] #3; did you mean "description"?',
    )


def test_the_doc_lists_every_health_threshold_with_its_default() -> None:
    doc = (REPO / "docs" / "config.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", doc, re.MULTILINE))
    defaults = HealthThresholds()

    for field in dataclasses.fields(HealthThresholds):
        assert field.name in rows, f"docs/config.md has no row for {field.name}"
        written = rows[field.name].strip("`")
        value = getattr(defaults, field.name)
        if isinstance(value, tuple):
            assert tuple(json.loads(written)) == value, field.name
        else:
            assert float(written) == value, field.name
