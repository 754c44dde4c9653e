"""A faithful fake of ``/sys/class/infiniband`` for the ib probe's tests and benchmark.

The layout and file formats are the kernel's (``drivers/infiniband/core/sysfs.c``): each class
entry is a symlink to the device under its PCI function, ports live in ``ports/<n>/``, every
attribute is one line ending in ``\\n``, ``lid``/``sm_lid`` are hex (``0x1a``), GUIDs are four
groups of four hex digits, GIDs eight. InfiniBand and RoCE ports (mlx5) carry the PMA
``counters/`` folder plus driver ``hw_counters/``; AWS EFA ports carry only ``hw_counters/`` and
their ``link_layer`` reads ``Unknown`` (the kernel's word for ``IB_LINK_LAYER_UNSPECIFIED``).

Files are rewritten in place (same inode), as sysfs values change under an open file.
``break_counter``/``break_port_file`` replace a file by a directory, so reading it fails with a
real ``IsADirectoryError`` (EISDIR); a probe sees that once it (re)opens the file, as it does
when it builds its cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

#: The PMA counters of a port with extended (64-bit) counters, in the kernel's order
#: (``pma_attrs_ext``). ``port_xmit_data``/``port_rcv_data`` count 4-byte words.
IB_COUNTERS: dict[str, int] = {
    "symbol_error": 0,
    "link_error_recovery": 0,
    "link_downed": 0,
    "port_rcv_errors": 0,
    "port_rcv_remote_physical_errors": 0,
    "port_rcv_switch_relay_errors": 0,
    "port_xmit_discards": 0,
    "port_xmit_constraint_errors": 0,
    "port_rcv_constraint_errors": 0,
    "local_link_integrity_errors": 0,
    "excessive_buffer_overrun_errors": 0,
    "VL15_dropped": 0,
    "port_xmit_data": 1852716358528,
    "port_rcv_data": 1852311296120,
    "port_xmit_packets": 6502311840,
    "port_xmit_wait": 91235,
    "port_rcv_packets": 6499182217,
    "unicast_rcv_packets": 6499181376,
    "unicast_xmit_packets": 6502311001,
    "multicast_rcv_packets": 841,
    "multicast_xmit_packets": 839,
}

#: mlx5 per-port ``hw_counters/`` (queue counters; ``lifespan`` is the cache period in ms).
MLX5_HW_COUNTERS: dict[str, int] = {
    "duplicate_request": 0,
    "implied_nak_seq_err": 0,
    "lifespan": 10,
    "local_ack_timeout_err": 0,
    "out_of_buffer": 0,
    "out_of_sequence": 0,
    "packet_seq_err": 0,
    "req_cqe_error": 0,
    "req_cqe_flush_error": 0,
    "req_remote_access_errors": 0,
    "req_remote_invalid_request": 0,
    "resp_cqe_error": 0,
    "resp_cqe_flush_error": 0,
    "resp_local_length_error": 0,
    "resp_remote_access_errors": 0,
    "rnr_nak_retry_err": 0,
    "rx_atomic_requests": 0,
    "rx_dct_connect": 0,
    "rx_read_requests": 1204,
    "rx_write_requests": 88213,
}

#: mlx5 RoCE adds congestion-control counters to the port's ``hw_counters/``.
MLX5_ROCE_HW_COUNTERS: dict[str, int] = {
    **MLX5_HW_COUNTERS,
    "np_cnp_sent": 0,
    "np_ecn_marked_roce_packets": 0,
    "roce_adp_retrans": 0,
    "roce_adp_retrans_to": 0,
    "roce_slow_restart": 0,
    "roce_slow_restart_cnps": 0,
    "roce_slow_restart_trans": 0,
    "rp_cnp_handled": 0,
    "rp_cnp_ignored": 0,
    "rx_icrc_encapsulated": 0,
}

#: EFA per-port ``hw_counters/`` (``EFA_DEFINE_PORT_STATS`` in ``efa_verbs.c``); these are bytes.
EFA_PORT_HW_COUNTERS: dict[str, int] = {
    "impaired_remote_conn_events": 0,
    "lifespan": 10,
    "rdma_read_bytes": 73819238400,
    "rdma_read_resp_bytes": 73817190400,
    "rdma_read_wr_err": 0,
    "rdma_read_wrs": 1126380,
    "rdma_write_bytes": 0,
    "rdma_write_recv_bytes": 0,
    "rdma_write_wr_err": 0,
    "rdma_write_wrs": 0,
    "recv_bytes": 9811357340,
    "recv_wrs": 2391021,
    "retrans_bytes": 0,
    "retrans_pkts": 0,
    "retrans_timeout_events": 0,
    "rx_bytes": 83630596364,
    "rx_drops": 0,
    "rx_pkts": 12120983,
    "send_bytes": 9811352212,
    "send_wrs": 2391020,
    "tx_bytes": 83628541772,
    "tx_pkts": 12120911,
    "unresponsive_remote_events": 0,
}

#: EFA device-level ``hw_counters/`` (``EFA_DEFINE_DEVICE_STATS``): not port counters.
EFA_DEVICE_HW_COUNTERS: dict[str, int] = {
    "alloc_pd_err": 0,
    "alloc_ucontext_err": 0,
    "cmds_err": 0,
    "completed_cmds": 4312,
    "create_ah_err": 0,
    "create_cq_err": 0,
    "create_qp_err": 0,
    "keep_alive_rcvd": 86012,
    "lifespan": 10,
    "mmap_err": 0,
    "no_completion_cmds": 0,
    "reg_mr_err": 0,
    "submitted_cmds": 4312,
}


def class_dir(root: str) -> str:
    """``<root>/class/infiniband``."""
    return os.path.join(root, "class", "infiniband")


def port_dir(root: str, hca: str, port: int = 1) -> str:
    """``<root>/class/infiniband/<hca>/ports/<port>`` (through the class symlink)."""
    return os.path.join(class_dir(root), hca, "ports", str(port))


def _write(path: str, value: int | str) -> None:
    # In place, like a sysfs value changing: an open file descriptor sees the new text.
    with open(path, "w", encoding="ascii") as handle:
        handle.write(f"{value}\n")


def _write_all(folder: str, values: Mapping[str, int | str]) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, value in values.items():
        _write(os.path.join(folder, name), value)


def _guid_add(guid: str, offset: int) -> str:
    number = int(guid.replace(":", ""), 16) + offset
    text = f"{number:016x}"
    return ":".join(text[i : i + 4] for i in range(0, 16, 4))


def build_hca(
    root: str,
    name: str,
    *,
    ports: int = 1,
    state: str = "4: ACTIVE",
    phys_state: str = "5: LinkUp",
    rate: str = "400 Gb/sec (4X NDR)",
    link_layer: str = "InfiniBand",
    counters: Mapping[str, int | str] | None = None,
    hw_counters: Mapping[str, int | str] | None = None,
    pma: bool = True,
    lid: int | str = 0x1A,
    sm_lid: int | str = 0x1,
    node_guid: str = "0c42:a103:0016:054c",
    gid0: str | None = None,
    fw_ver: str = "28.39.1002",
    hca_type: str | None = "MT4129",
    board_id: str | None = "MT_0000000838",
    node_desc: str = "gpu001 mlx5_0",
    node_type: str = "1: CA",
    device_hw_counters: Mapping[str, int | str] | None = None,
    pci_bus: int = 0x1A,
) -> str:
    """One HCA (defaults: a ConnectX-7 NDR InfiniBand port); returns its device folder.

    ``counters`` overrides or adds PMA counters on top of ``IB_COUNTERS``; ``pma=False`` leaves
    ``counters/`` out (as on EFA). ``hw_counters`` is the port's driver folder (default: mlx5).
    Ports get GUIDs ``node_guid + port - 1`` and ``gids/0`` = ``fe80::`` + that GUID unless
    ``gid0`` is given. ``hca_type``/``board_id`` of None leave the file out (EFA has neither).
    """
    pci = f"0000:{pci_bus:02x}:00.0"
    device = os.path.join(root, "devices", "pci0000:00", "0000:00:01.0", pci, "infiniband", name)
    os.makedirs(os.path.join(device, "ports"), exist_ok=True)
    os.makedirs(class_dir(root), exist_ok=True)
    link = os.path.join(class_dir(root), name)
    if not os.path.islink(link):
        os.symlink(os.path.relpath(device, class_dir(root)), link)
    top: dict[str, int | str] = {
        "node_guid": node_guid,
        "sys_image_guid": node_guid,
        "fw_ver": fw_ver,
        "node_desc": node_desc,
        "node_type": node_type,
        "uevent": f"NAME={name}",
    }
    if hca_type is not None:
        top["hca_type"] = hca_type
        top["hw_rev"] = "0x0"
    if board_id is not None:
        top["board_id"] = board_id
    _write_all(device, top)
    if device_hw_counters is not None:
        _write_all(os.path.join(device, "hw_counters"), device_hw_counters)
    for number in range(1, ports + 1):
        folder = os.path.join(device, "ports", str(number))
        guid = _guid_add(node_guid, number - 1)
        _write_all(
            folder,
            {
                "state": state,
                "phys_state": phys_state,
                "rate": rate,
                "link_layer": link_layer,
                "lid": f"0x{lid:x}" if isinstance(lid, int) else lid,
                "sm_lid": f"0x{sm_lid:x}" if isinstance(sm_lid, int) else sm_lid,
                "lid_mask_count": 0,
                "sm_sl": 0,
                "cap_mask": "0xa751e848",
                "has_smi": 1,
            },
        )
        _write_all(
            os.path.join(folder, "gids"),
            {"0": gid0 or "fe80:0000:0000:0000:" + guid, "1": "0000:" * 7 + "0000"},
        )
        _write_all(os.path.join(folder, "pkeys"), {"0": "0xffff", "1": "0x0000"})
        if pma:
            values: dict[str, int | str] = dict(IB_COUNTERS)
            values.update(counters or {})
            _write_all(os.path.join(folder, "counters"), values)
        hw = MLX5_HW_COUNTERS if hw_counters is None else hw_counters
        if hw:
            _write_all(os.path.join(folder, "hw_counters"), hw)
    return device


def build_roce(
    root: str,
    name: str = "mlx5_0",
    mac: str = "0c:42:a1:16:05:4c",
    **options: object,
) -> str:
    """A ConnectX-6 Dx RoCE port at 100 GbE: Ethernet link layer, LID 0, GID from the MAC."""
    octets = [int(part, 16) for part in mac.split(":")]
    eui = [octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]]
    gid = "fe80:0000:0000:0000:" + ":".join(f"{eui[i]:02x}{eui[i + 1]:02x}" for i in range(0, 8, 2))
    settings: dict[str, object] = {
        "link_layer": "Ethernet",
        "rate": "100 Gb/sec (4X EDR)",
        "lid": 0,
        "sm_lid": 0,
        "gid0": gid,
        "node_guid": "0c42:a103:0016:054c",
        "fw_ver": "22.39.1002",
        "hca_type": "MT4125",
        "board_id": "MT_0000000359",
        "node_desc": f"gpu001 {name}",
        "hw_counters": MLX5_ROCE_HW_COUNTERS,
    }
    settings.update(options)
    return build_hca(root, name, **settings)  # type: ignore[arg-type]


def build_efa(root: str, name: str = "efa_0", **options: object) -> str:
    """An AWS EFA device: one port, no ``counters/``, port and device ``hw_counters/``."""
    settings: dict[str, object] = {
        "link_layer": "Unknown",
        "rate": "100 Gb/sec (4X EDR)",
        "lid": 0,
        "sm_lid": 0,
        "node_guid": "04d3:2dff:fe5e:8a3b",
        "gid0": "fe80:0000:0000:0000:04d3:2dff:fe5e:8a3b",
        "fw_ver": "",
        "hca_type": None,
        "board_id": None,
        "node_desc": "",
        "node_type": "7: unspecified",
        "pma": False,
        "hw_counters": EFA_PORT_HW_COUNTERS,
        "device_hw_counters": EFA_DEVICE_HW_COUNTERS,
        "pci_bus": 0x31,
    }
    settings.update(options)
    return build_hca(root, name, **settings)  # type: ignore[arg-type]


def set_port_file(root: str, hca: str, port: int, name: str, value: int | str) -> None:
    """Rewrite one port attribute (``state``, ``rate``, ``lid`` ...) in place."""
    _write(os.path.join(port_dir(root, hca, port), name), value)


def set_counter(
    root: str, hca: str, port: int, name: str, value: int | str, *, hw: bool = False
) -> None:
    """Rewrite one counter in ``counters/`` (or ``hw_counters/`` with ``hw=True``) in place."""
    folder = "hw_counters" if hw else "counters"
    _write(os.path.join(port_dir(root, hca, port), folder, name), value)


def break_port_file(root: str, hca: str, port: int, name: str) -> None:
    """Make reading ``ports/<port>/<name>`` fail with a real IsADirectoryError (EISDIR)."""
    path = os.path.join(port_dir(root, hca, port), name)
    os.remove(path)
    os.mkdir(path)


def break_counter(root: str, hca: str, port: int, name: str, *, hw: bool = False) -> None:
    """Make reading one counter fail with a real IsADirectoryError (EISDIR)."""
    break_port_file(root, hca, port, os.path.join("hw_counters" if hw else "counters", name))


def remove_hca(root: str, name: str) -> None:
    """The HCA disappears (driver unbound): its class link and device folder go."""
    link = os.path.join(class_dir(root), name)
    device = os.path.realpath(link)
    os.remove(link)
    shutil.rmtree(device)


def fake_ib_fleet(root: str, n_hcas: int = 8) -> list[str]:
    """A DGX-style node: ``mlx5_0``..``mlx5_<n-1>``, one NDR port each; returns the names."""
    names = []
    for index in range(n_hcas):
        name = f"mlx5_{index}"
        build_hca(
            root,
            name,
            lid=0x1A + index,
            node_guid=f"0c42:a103:0016:{0x054C + 0x10 * index:04x}",
            node_desc=f"gpu001 {name}",
            pci_bus=0x1A + 0x10 * index,
        )
        names.append(name)
    return names
