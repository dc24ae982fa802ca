"""Generated protobuf modules for torpor's image format (CRIU-compatible).

Regenerate with scripts/gen-protos.sh; do not edit. Every message class, enum class and
top-level enum value is also available directly on this package: pb.CoreEntry is
pb.core_pb2.CoreEntry, pb.COMPAT is pb.core_x86_pb2.COMPAT.
"""

from torpor.images.pb import cgroup_pb2
from torpor.images.pb import core_pb2
from torpor.images.pb import core_x86_pb2
from torpor.images.pb import cpuinfo_pb2
from torpor.images.pb import creds_pb2
from torpor.images.pb import eventfd_pb2
from torpor.images.pb import eventpoll_pb2
from torpor.images.pb import fdinfo_pb2
from torpor.images.pb import fh_pb2
from torpor.images.pb import fifo_pb2
from torpor.images.pb import file_lock_pb2
from torpor.images.pb import fown_pb2
from torpor.images.pb import fs_pb2
from torpor.images.pb import fsnotify_pb2
from torpor.images.pb import ghost_file_pb2
from torpor.images.pb import inventory_pb2
from torpor.images.pb import mm_pb2
from torpor.images.pb import ns_file_pb2
from torpor.images.pb import packet_sock_pb2
from torpor.images.pb import pagemap_pb2
from torpor.images.pb import pidfd_pb2
from torpor.images.pb import pipe_data_pb2
from torpor.images.pb import pipe_pb2
from torpor.images.pb import pstree_pb2
from torpor.images.pb import regfile_pb2
from torpor.images.pb import remap_file_path_pb2
from torpor.images.pb import rlimit_pb2
from torpor.images.pb import rseq_pb2
from torpor.images.pb import sa_pb2
from torpor.images.pb import seccomp_pb2
from torpor.images.pb import siginfo_pb2
from torpor.images.pb import signalfd_pb2
from torpor.images.pb import sk_inet_pb2
from torpor.images.pb import sk_netlink_pb2
from torpor.images.pb import sk_opts_pb2
from torpor.images.pb import sk_packet_pb2
from torpor.images.pb import sk_unix_pb2
from torpor.images.pb import tcp_stream_pb2
from torpor.images.pb import timens_pb2
from torpor.images.pb import timer_pb2
from torpor.images.pb import timerfd_pb2
from torpor.images.pb import tty_pb2
from torpor.images.pb import vma_pb2

_MODULES = (
    cgroup_pb2,
    core_pb2,
    core_x86_pb2,
    cpuinfo_pb2,
    creds_pb2,
    eventfd_pb2,
    eventpoll_pb2,
    fdinfo_pb2,
    fh_pb2,
    fifo_pb2,
    file_lock_pb2,
    fown_pb2,
    fs_pb2,
    fsnotify_pb2,
    ghost_file_pb2,
    inventory_pb2,
    mm_pb2,
    ns_file_pb2,
    packet_sock_pb2,
    pagemap_pb2,
    pidfd_pb2,
    pipe_data_pb2,
    pipe_pb2,
    pstree_pb2,
    regfile_pb2,
    remap_file_path_pb2,
    rlimit_pb2,
    rseq_pb2,
    sa_pb2,
    seccomp_pb2,
    siginfo_pb2,
    signalfd_pb2,
    sk_inet_pb2,
    sk_netlink_pb2,
    sk_opts_pb2,
    sk_packet_pb2,
    sk_unix_pb2,
    tcp_stream_pb2,
    timens_pb2,
    timer_pb2,
    timerfd_pb2,
    tty_pb2,
    vma_pb2,
)

for _module in _MODULES:
    for _name in _module.DESCRIPTOR.message_types_by_name:
        globals()[_name] = getattr(_module, _name)
    for _name, _enum in _module.DESCRIPTOR.enum_types_by_name.items():
        globals()[_name] = getattr(_module, _name)
        for _value in _enum.values:
            globals()[_value.name] = _value.number
del _module, _name, _enum, _value
