"""Linux capabilities: names, and the sets of a process as 64-bit masks."""

from torpor.kernel.procfs import read_status

NAMES = (
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore"
).split()


def names(mask: int) -> list[str]:
    return [f"cap_{NAMES[i]}" if i < len(NAMES) else f"cap_{i}" for i in range(64) if mask >> i & 1]


def own_sets(pid: int | str = "self") -> dict[str, int]:
    """CapInh, CapPrm, CapEff and CapBnd of a process."""
    return sets_in(read_status(pid))


def sets_in(status: dict[str, str]) -> dict[str, int]:
    """The capability sets in a /proc/PID/status already read."""
    return {key: int(status[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapBnd")}


def join(words) -> int:
    """A capability set stored as two 32-bit words (CRIU's CredsEntry) as one mask."""
    words = list(words) + [0, 0]
    return words[0] | words[1] << 32
