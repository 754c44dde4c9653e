"""The faults an operator can inject into a simulated node, aimed at what that node has.

Each choice is a label for people and a fault line for the simulator (``docs/agent-sim.md``);
targets (a GPU, an IB port, a mount) come from the node's latest sample, so every choice is
one the node can take.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidectl.console.fleet import NodeState

NETWORK_FS = ("nfs", "nfs4", "lustre", "beegfs", "gpfs", "cifs", "fuse.sshfs")


@dataclass(frozen=True, slots=True)
class FaultChoice:
    label: str
    fault: str


def fault_choices(node: NodeState) -> list[FaultChoice]:
    sample = node.sample
    if sample is None:
        return []
    probes = sample.probes
    choices: list[FaultChoice] = []
    gpus = [g.index for g in probes.gpu.gpus] if probes.gpu else []
    if gpus:
        first, last = gpus[0], gpus[-1]
        choices += [
            FaultChoice(f"XID 79 (fell off the bus) on GPU {first}", f"xid gpu={first} code=79"),
            FaultChoice(f"double-bit ECC error on GPU {first}", f"ecc_dbe gpu={first}"),
            FaultChoice(f"GPU {last} overheats", f"hot gpu={last}"),
            FaultChoice(f"GPU {last} disappears", f"gpu_lost gpu={last}"),
        ]
    ports = [p.key for p in probes.ib.ports] if probes.ib else []
    if ports:
        choices += [
            FaultChoice(f"IB port {ports[0]} goes down", f"ib_down port={ports[0]}"),
            FaultChoice(f"symbol errors climb on {ports[-1]}", f"symbol_errors port={ports[-1]}"),
        ]
    mounts = probes.storage.mounts if probes.storage else []
    local = [m.mountpoint for m in mounts if (m.fstype or "") not in NETWORK_FS]
    remote = [m.mountpoint for m in mounts if (m.fstype or "") in NETWORK_FS]
    if local:
        choices.append(FaultChoice(f"{local[-1]} fills up", f"disk_full mount={local[-1]}"))
    if remote:
        choices.append(FaultChoice(f"{remote[0]} goes stale", f"stale_mount mount={remote[0]}"))
    return choices
