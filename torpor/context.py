"""The state that dump and restore stages share while working on one task."""

import logging
import os
from dataclasses import dataclass, field

from torpor.arch import Abi
from torpor.errors import UnsupportedError
from torpor.images import ImageDir, pb
from torpor.remote import RemoteTask

log = logging.getLogger("torpor")


def no_owner():
    """The FownEntry of a file no process asked signals from (F_SETOWN never used)."""
    return pb.fown_pb2.FownEntry(uid=0, euid=0, signum=0, pid_type=0, pid=0)


def is_utf8(path: str) -> bool:
    """Whether a path from procfs (undecodable bytes kept as surrogates) is valid UTF-8, as
    the images' string fields must be."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class FileTable:
    """files.img being built: one FileEntry per distinct file, shared by fds and mappings."""

    entries: list = field(default_factory=list)
    by_key: dict = field(default_factory=dict)

    def add(self, key, make) -> int:
        """The id of the file known by `key`, creating its entry with make(id) the first time."""
        if key not in self.by_key:
            file_id = len(self.entries) + 1
            self.entries.append(make(file_id))
            self.by_key[key] = file_id
        return self.by_key[key]

    def add_path(self, path: str, flags: int = os.O_RDONLY) -> int:
        """The id of the file at `path` (an executable, a mapped file, a directory), opened
        with `flags` when restored; its size and mode are recorded as they are now."""

        if not is_utf8(path):
            raise UnsupportedError(
                f"{path!r} is a path that is not UTF-8, which images cannot hold"
            )

        def make(file_id):
            st = os.stat(path)
            reg = pb.regfile_pb2.RegFileEntry(
                id=file_id,
                flags=flags,
                pos=0,
                name=path,
                mode=st.st_mode,
                fown=no_owner(),
            )
            if not flags & os.O_DIRECTORY:
                reg.size = st.st_size
            return pb.fdinfo_pb2.FileEntry(type=pb.fdinfo_pb2.REG, id=file_id, reg=reg)

        return self.add(("path", path), make)


@dataclass(frozen=True)
class DumpOptions:
    """What a dump was asked for that parts of it act on."""

    shell_job: bool = False  # fds on the caller's terminal may be saved
    leave_running: bool = False  # the tree runs on after the dump (else it is killed)
    tcp_established: bool = False  # TCP connections are saved (through TCP_REPAIR)
    ext_unix_sk: bool = False  # datagram sockets connected outside the tree are saved
    tasks: frozenset = frozenset()  # every PID and TID of the frozen tree (parts.files sets it)
    network_lock: str = "nftables"  # how TCP connections with a peer outside are kept quiet
    tcp_close: bool = False  # TCP connections are saved to be restored closed (no state read)
    root: int = 0  # the PID of the tree's root


@dataclass
class DumpContext:
    pid: int
    task: RemoteTask
    abi: Abi
    images: ImageDir
    core: "pb.core_pb2.CoreEntry"
    mm: "pb.mm_pb2.MmEntry"
    files: FileTable
    shell_job: bool = False
    progress: object = None
    pages_id: int = 1  # the pages-N.img of this process
    pages_bytes: int = 0  # how much of it was written
    shmem_saved: set = field(default_factory=set)  # shared memory ranges saved (whole tree)
    ghosts: object = None  # parts.ghosts.TreeGhosts: deleted files the tree holds
    memfds: object = None  # parts.memfds.TreeMemfds: memfds the tree holds or maps
    carried: object = None  # parts.files.InFlight: files carried in queued messages (tree)
    in_flight: bool = False  # `pid` is torpor, saving its copies of files in flight


@dataclass
class RestoreContext:
    pid: int
    task: RemoteTask
    abi: Abi
    images: ImageDir
    core: "pb.core_pb2.CoreEntry"
    mm: "pb.mm_pb2.MmEntry"
    files: dict  # id -> FileEntry
    shell_job: bool = False
    force_vdso_trampolines: bool = False
    progress: object = None
    notes: list = field(default_factory=list)  # warnings to show the user
    image_pid: int = 0  # the PID in the images; the task has it in its own PID namespace
    pages_id: int = 1
    shared_memory: object = None  # torpor.parts.shmem.SharedMemory of the whole tree
    shared_files: object = None  # torpor.parts.files.TreeFds: fds other processes can take
    thread_cores: dict = field(default_factory=dict)  # tid -> CoreEntry of the other threads
    inherited: dict = field(default_factory=dict)  # external key -> torpor's fd (--inherit-fd)
    vdso_trampolines: bool = False  # the dumped vDSO kept as a copy, jumping to the kernel's
    tcp_close: bool = False  # TCP connections are restored closed
    cow: object = None  # torpor.parts.cow.Sharing: memory shared copy-on-write in the tree
    shares_files: bool = False  # its fd table is its parent's (clone CLONE_FILES)

    def __post_init__(self):
        self.image_pid = self.image_pid or self.pid

    @property
    def owns_files(self) -> bool:
        """Whether the process restores and finishes its fd table itself: not when it shares
        its parent's, which the parent did (its fds are in the table by then)."""
        return not self.shares_files
