"""``[[pools]]`` and ``[scheduler]`` in cluster.toml: what loads, and what is refused where."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from tests.console.test_config import HEAD, folder, load, refuse
from tidectl.console.config.model import (
    BootstrapSettings,
    Budget,
    BudgetPeriod,
    DataClass,
    PolicySettings,
    PoolPolicy,
    PoolSpec,
    Role,
    SchedulerSettings,
)

__all__ = ["folder"]  # the fixture

NODES = '[[nodes]]\nnames = "gpu[1-2]"\n'  # lines 6-7; pools start on line 8
AWS = """\
[[pools]]
name = "h100-east"
provider = "aws"
region = "us-east-1"
zones = ["us-east-1a", "us-east-1b"]
instance_types = ["p5.48xlarge", "p5e.48xlarge"]
gpus_per_node = 8
max_nodes = 16
image_id = "ami-0123456789abcdef0"
"""


def test_an_aws_pool_and_a_sim_pool_load_with_their_defaults(folder: Path) -> None:
    text = HEAD + NODES + AWS + '[[pools]]\nname = "burst"\nprovider = "sim"\nmax_nodes = 64\n'
    config = load(folder, text + '[scheduler]\nkind = "sim"\n')
    aws, sim = config.pools
    assert aws == PoolSpec(
        name="h100-east",
        provider="aws",
        region="us-east-1",
        site="us-east-1",
        instance_types=("p5.48xlarge", "p5e.48xlarge"),
        zones=("us-east-1a", "us-east-1b"),
        gpus_per_node=8,
        max_nodes=16,
        price_per_hour=None,
        image_id="ami-0123456789abcdef0",
    )
    assert (sim.region, sim.instance_types, sim.zones, sim.image_id) == (
        "sim-local",
        ("sim.gpu8",),
        (),
        None,
    )
    assert sim.bootstrap == BootstrapSettings()
    assert config.scheduler == SchedulerSettings(kind="sim")


def test_no_pools_and_no_scheduler_by_default(folder: Path) -> None:
    config = load(folder, HEAD + NODES)
    assert config.pools == ()
    assert config.scheduler.kind == "none"


def test_every_optional_value(folder: Path) -> None:
    text = AWS + (
        'site = "aws-east"\nprice_per_hour = 55.04\nspot = true\nsubnet_id = "subnet-0abc"\n'
        'security_group_ids = ["sg-1", "sg-2"]\ncapacity_backoff_s = 120\n'
        "all_or_nothing = true\n"
        '[pools.bootstrap]\nuser = "ubuntu"\nboot_timeout_s = 600\njoin_timeout_s = 120\n'
    )
    pool = load(folder, HEAD + NODES + text).pools[0]
    assert (pool.site, pool.price_per_hour, pool.spot, pool.subnet_id) == (
        "aws-east",
        55.04,
        True,
        "subnet-0abc",
    )
    assert pool.security_group_ids == ("sg-1", "sg-2")
    assert (pool.capacity_backoff_s, pool.all_or_nothing) == (120.0, True)
    assert pool.bootstrap == BootstrapSettings("ubuntu", 600.0, 120.0)
    joined = load(folder, HEAD + NODES + AWS + '[pools.bootstrap]\njoin_command = "x {node}"\n')
    assert joined.pools[0].bootstrap.join_command == "x {node}"


@pytest.mark.parametrize(
    ("pools", "line", "words"),
    [
        (AWS.replace('"aws"', '"gcp"'), 10, ['provider "gcp"', "sim, aws"]),
        (AWS.replace('region = "us-east-1"\n', ""), 8, ['missing "region"']),
        (AWS.replace('image_id = "ami-0123456789abcdef0"\n', ""), 8, ["needs image_id"]),
        (AWS.replace("ami-0123456789abcdef0", "ubuntu-22.04"), 16, ["not an AMI id"]),
        (AWS.replace('"h100-east"', '"H100 East"'), 9, ["lower-case letters"]),
        (AWS.replace("max_nodes = 16\n", ""), 8, ["needs max_nodes"]),
        (AWS.replace("max_nodes = 16", "max_nodes = 0"), 15, ["between 1 and 10000"]),
        (AWS.replace("gpus_per_node = 8", "gpus_per_node = 8.5"), 14, ["an integer"]),
        (AWS + "spot = 1\n", 17, ["true or false"]),
        (AWS + "price_per_hour = -1\n", 17, ["at least 0"]),
        (AWS + "max_node = 3\n", 17, ['unknown key "max_node"', 'did you mean "max_nodes"']),
        (AWS.replace('["p5.48xlarge", "p5e.48xlarge"]', "[]"), 8, ["needs instance_types"]),
        (AWS.replace('"us-east-1b"', '"us-east-1a"'), 12, ["names an entry twice"]),
        (AWS + AWS, 18, ['pool "h100-east" is defined twice', "line 9"]),
        (AWS + "[pools.bootstrap]\nusr = 1\n", 18, ['unknown key "usr"']),
        ('[pools]\nname = "x"\n', 8, ["[[pools]], with double brackets"]),
        ('[scheduler]\nkind = "pbs"\n', 9, ['scheduler kind "pbs"', "none, sim, slurm"]),
        (AWS + 'slurm_nodes = "cloud[1-"\n', 17, ["is not a node set"]),
        (AWS + '[pools.bootstrap]\njoin_command = "start {host}"\n', 18, ["other than {node}"]),
        (AWS + '[pools.bootstrap]\njoin_command = "  "\n', 18, ["join_command is empty"]),
        (AWS + "[pools.bootstrap]\nssh_port = 0\n", 18, ["between 1 and 65535"]),
        (AWS + '[pools.bootstrap]\nuser = "a b"\n', 18, ["is not a login name"]),
        (AWS + '[pools.bootstrap]\nhost_ca = "no-ca.pub"\n', 18, ["no-ca.pub does not exist"]),
        (AWS + '[pools.bootstrap]\nhost_ca = "keys/id_ed25519"\n', 18, ["not an SSH public key"]),
        (AWS + '[pools.bootstrap]\nidentity_file = "nokey"\n', 18, ["nokey does not exist"]),
        (AWS + 'slurm_nodes = "cloud 1"\n', 17, ["'cloud 1' is not a node name"]),
        (
            AWS
            + 'slurm_nodes = "cloud[1-4]"\n'
            + AWS.replace("h100-east", "h100-west")
            + 'slurm_nodes = "cloud[4-5]"\n',
            27,
            ['pool "h100-west" and pool "h100-east" both name cloud4', "belongs to one pool"],
        ),
    ],
)
def test_bad_pools_are_refused_with_line_and_sentence(
    folder: Path, pools: str, line: int, words: list[str]
) -> None:
    error = refuse(folder, HEAD + NODES + pools)
    assert error.line == line, str(error)
    for word in words:
        assert word in str(error)


def test_the_bootstrap_port_key_and_host_ca_load_relative_to_the_file(folder: Path) -> None:
    ca = asyncssh.generate_private_key("ssh-ed25519")
    ca.write_public_key(str(folder / "host_ca.pub"))
    ca.write_private_key(str(folder / "cloud_key"))
    text = AWS + (
        '[pools.bootstrap]\nssh_port = 2222\nidentity_file = "cloud_key"\nhost_ca = "host_ca.pub"\n'
    )
    bootstrap = load(folder, HEAD + NODES + text).pools[0].bootstrap
    assert (bootstrap.ssh_port, bootstrap.user) == (2222, None)
    assert bootstrap.identity_file == folder / "cloud_key"
    assert bootstrap.host_ca == folder / "host_ca.pub"


def test_budgets_policies_and_pool_policies_load(folder: Path) -> None:
    text = AWS + (
        "[pools.policy]\nmin_nodes = 2\nburst_on_pressure = true\npending_for_s = 60\n"
        "cooldown_s = 120\nidle_drain_after_s = 0\nmax_lifetime_s = 86400\n"
        '[[budgets]]\npool = "h100-east"\nlimit = 500\nwarn_at = 0.5\n'
        '[[budgets]]\nperiod = "month"\nlimit = 20000.5\n'
        "[policies]\nenabled = false\ninterval_s = 10\n"
    )
    config = load(folder, HEAD + NODES + text)
    assert config.pools[0].policy == PoolPolicy(
        min_nodes=2,
        idle_drain_after_s=None,  # 0: never
        burst_on_pressure=True,
        pending_for_s=60.0,
        cooldown_s=120.0,
        max_lifetime_s=86400.0,
    )
    assert config.budgets == (
        Budget(500.0, BudgetPeriod.DAY, "h100-east", 0.5),
        Budget(20000.5, BudgetPeriod.MONTH, None, 0.8),
    )
    assert config.policies == PolicySettings(enabled=False, interval_s=10.0)
    defaults = load(folder, HEAD + NODES + AWS)
    assert defaults.pools[0].policy.idle_drain_after_s == 1800.0  # on unless turned off
    assert defaults.budgets == () and defaults.policies.enabled


def test_the_watchdog_is_off_unless_a_pool_gives_it_a_lease(folder: Path) -> None:
    defaults = load(folder, HEAD + NODES + AWS).pools[0].policy
    assert (defaults.watchdog_lease_s, defaults.watchdog_poweroff) == (
        None,
        "sudo systemctl poweroff",
    )
    text = AWS + '[pools.policy]\nwatchdog_lease_s = 900\nwatchdog_poweroff = "sudo poweroff"\n'
    policy = load(folder, HEAD + NODES + text).pools[0].policy
    assert (policy.watchdog_lease_s, policy.watchdog_poweroff) == (900.0, "sudo poweroff")
    off = load(folder, HEAD + NODES + AWS + "[pools.policy]\nwatchdog_lease_s = 0\n")
    assert off.pools[0].policy.watchdog_lease_s is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[[budgets]]\npool = "nope"\nlimit = 1\n', 18, ["no such pool (pools: h100-east)"]),
        ("[pools.policy]\nwatchdog_lease_s = -1\n", 18, ["watchdog_lease_s", "at least 0"]),
        ('[pools.policy]\nwatchdog_poweroff = " "\n', 18, ["watchdog_poweroff is empty"]),
        ("[[budgets]]\nlimit = 0\n", 18, ["greater than 0"]),
        ('[[budgets]]\nperiod = "week"\nlimit = 1\n', 18, ['period "week" is not day or month']),
        ("[[budgets]]\nwarn_at = 0.5\n", 17, ["a budget needs limit"]),
        ("[[budgets]]\nlimit = 5\n[[budgets]]\nlimit = 6\n", 19, ["two day budgets"]),
        ("[policies]\ninterval_s = 0.1\n", 18, ["between 1 and 3600"]),
        ("[pools.policy]\nmin_nodes = 17\n", 18, ["between 0 and 16"]),
        ("[pools.policy]\nidle_gpu_util_below = 101\n", 18, ["between 0 and 100"]),
        ("[pools.policy]\ncooldown = 1\n", 18, ['unknown key "cooldown"']),
    ],
)
def test_bad_budgets_and_policies_are_refused_with_line_and_sentence(
    folder: Path, text: str, line: int, words: list[str]
) -> None:
    error = refuse(folder, HEAD + NODES + AWS + text)
    assert error.line == line, str(error)
    for word in words:
        assert word in str(error)


def test_slurm_nodes_expand_and_set_max_nodes_unless_it_is_given(folder: Path) -> None:
    text = AWS.replace("max_nodes = 16\n", "") + 'slurm_nodes = "cloud[01-03]"\n'
    pool = load(folder, HEAD + NODES + text).pools[0]
    assert (pool.slurm_nodes, pool.max_nodes) == (("cloud01", "cloud02", "cloud03"), 3)
    capped = load(folder, HEAD + NODES + AWS.replace("16", "2") + 'slurm_nodes = "c[1-3]"\n')
    assert capped.pools[0].max_nodes == 2


def test_the_store_path_is_relative_to_the_file_and_not_a_folder(folder: Path) -> None:
    assert load(folder, HEAD + NODES).store.path is None
    config = load(folder, HEAD + NODES + '[store]\npath = "state/lab.sqlite3"\n')
    assert config.store.path == folder / "state" / "lab.sqlite3"
    error = refuse(folder, HEAD + NODES + '[store]\npath = "keys"\n')
    assert (error.line, "is a folder; name a file in it") == (9, error.message[-30:])


def test_the_server_socket_is_relative_to_the_file_and_short_enough(folder: Path) -> None:
    assert load(folder, HEAD + NODES).server.socket is None
    config = load(folder, HEAD + NODES + '[server]\nsocket = "run/lab.sock"\ngroup = "ops"\n')
    assert (config.server.socket, config.server.group) == (folder / "run" / "lab.sock", "ops")
    error = refuse(folder, HEAD + NODES + f'[server]\nsocket = "/{"x" * 120}"\n')
    assert "a Unix socket's path must be at most 107" in error.message
    assert config.server.reconcile_interval_s == 5.0
    quick = load(folder, HEAD + NODES + "[server]\nreconcile_interval_s = 0.5\n")
    assert quick.server.reconcile_interval_s == 0.5
    error = refuse(folder, HEAD + NODES + "[server]\nreconcile_interval_s = 0\n")
    assert "between 0.1 and 3600" in error.message


def test_roles_load_by_user_and_group_and_bad_entries_are_refused(folder: Path) -> None:
    text = HEAD + NODES + '[roles]\nadmin = ["ada", "@hpc-admins"]\nviewer = ["vic", "vic"]\n'
    roles = load(folder, text).roles
    assert roles is not None
    assert dict(roles.members) == {Role.ADMIN: ("ada", "@hpc-admins"), Role.VIEWER: ("vic",)}
    assert load(folder, HEAD + NODES).roles is None  # no table: the default (docs/config.md)
    bad = refuse(folder, HEAD + NODES + '[roles]\noperator = ["bo", "ana smith"]\n')
    assert bad.line == 9 and "item 2, 'ana smith', is not a login name or an @group" in str(bad)
    unknown = refuse(folder, HEAD + NODES + '[roles]\nowner = ["ada"]\n')
    assert unknown.line == 9 and 'unknown key "owner"' in str(unknown)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (AWS + 'data_class = "pii"\n', 17, ['names data class "pii", which no [[data_classes]]']),
        ('[[data_classes]]\nname = "PII"\nregions = ["eu-west-1"]\n', 9, ["lower-case"]),
        ('[[data_classes]]\nname = "pii"\n', 8, ['data class "pii" needs regions']),
        (
            '[[data_classes]]\nname = "pii"\nregions = ["*"]\n' * 2,
            12,
            ['data class "pii" is defined twice'],
        ),
    ],
)
def test_bad_data_classes_are_refused_with_line_and_sentence(
    folder: Path, text: str, line: int, words: list[str]
) -> None:
    error = refuse(folder, HEAD + NODES + text)
    assert error.line == line, str(error)
    for word in words:
        assert word in str(error)


def test_data_classes_load_and_a_pool_names_one(folder: Path) -> None:
    classes = '[[data_classes]]\nname = "pii"\nregions = ["eu-west-1", "eu-west-1"]\n'
    config = load(folder, HEAD + NODES + AWS + 'data_class = "pii"\n' + classes)
    assert config.data_classes == (DataClass("pii", ("eu-west-1",)),)
    assert config.pools[0].data_class == "pii"
    assert config.data_classes[0].allows("eu-west-1") and not config.data_classes[0].allows("x")
