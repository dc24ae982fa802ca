"""Unix sockets: stream, datagram and seqpacket; unbound, bound to a path or an abstract
name, listening with connections not yet accepted, connected (socketpairs, accepted
connections, datagram sockets connected one way); with their options, unread messages
and shutdown state. CRIU's UNIXSK kind (UnixSkEntry in files.img, sk-queues.img).

At dump, the kernel tells (sock_diag) each socket's type, state, name, peer and pending
connections; both ends of every connection must be in the tree (a peer outside it refuses
the dump, unless --ext-unix-sk saves a datagram socket connected to a named socket outside,
connecting it to that name again). At restore every socket is made in the process that first
holds it, in the way that gives it back its identity:
- a pair connected to each other and to nothing else (socketpair(2), or a connection whose
  peer was since closed) is made with socketpair; the other end waits, parked, for the
  process holding it (or is closed, once its data is queued);
- a connection accepted from a listening socket is made again by a connect from the
  client's process and an accept in the server's, so that each end has its name and sees
  its peer's (a listener that does not exist yet is stood in for by a temporary one with
  its name);
- everything else is a new socket, bound to its name and listening where it listened;
  connections still waiting to be accepted, and datagram sockets connected to a named one,
  connect once every socket of the tree exists.
Then, for the whole tree: buffer sizes; the saved messages, each sent again by the socket
that sent it (a datagram from a named sender keeps its sender address), with the files it
carried (SCM_RIGHTS: files in flight, see parts.files); the other options; and the
shutdowns.

What a client wrote on a connection its listener has not accepted yet sits in a socket no
fd reaches: the dump reads it by accepting the connections from torpor's copy of the
listener, as the last thing before the tree is killed (so a dump that leaves the tree
running refuses it), and the client sends it again once connected at restore.

A path name is bound again where it was (a relative one from its directory); the socket
file left by the dumped socket is replaced, its owner and mode restored; one deleted at dump
(another file may have been put at its path since) is bound from inside a private directory
made the task's root for the call, so that it has its name and no file anywhere. The
kernel's record of who connected (SO_PEERCRED) is made with each peer's own effective uid and
gid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from contextlib import ExitStack

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import sockdiag
from torpor.kernel.files import borrowed
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import FdKind, park, place, take
from torpor.parts.sockets import borrowed_socket, options, queues

TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
AT_FDCWD = -100
UNIX_EXTERN = 1  # UnixSkEntry.uflags: the peer is outside the tree (--ext-unix-sk)
SEND_SHUTDOWN, RCV_SHUTDOWN = 2, 1
UNIX_PATH_MAX = 108
_TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "datagram", 5: "seqpacket"}
SETFL_FLAGS = os.O_NONBLOCK | os.O_APPEND | os.O_NOATIME
F_SETFL = 4


class UnixSocket(FdKind):
    name = "a Unix socket"
    fd_type = pb.fdinfo_pb2.UNIXSK
    field = "usk"
    travels = True

    def in_flight(self, found) -> list[int]:
        copies: list[int] = []

        def keep(scm, fds):
            copies.extend(fds)

        diag = sockdiag.unix_sockets()
        for pid, d in found:
            sk = diag.get(d.inode)
            if sk is None or not _may_queue(sk):
                continue
            with borrowed_socket(pid, d.fd) as sock:
                queues.peek(sock, f"fd {d.fd} of process {pid} ({_describe(sk)})", False, keep)
        return copies

    def recognise(self, d) -> bool:
        return d.kind == "socket" and d.protocol.startswith("UNIX")

    # --- dump ------------------------------------------------------------------------------

    def inspect(self, found, options, state) -> None:
        if not found:
            return
        diag = sockdiag.unix_sockets()
        tree = {d.inode: (pid, d) for pid, d in found}
        every_listener = [sk for sk in diag.values() if sk.state == TCP_LISTEN]
        listeners = {sk.ino: sk for sk in every_listener if sk.ino in tree}
        pending = {c: (sk.ino, i) for sk in every_listener for i, c in enumerate(sk.icons)}
        for ino, (pid, d) in tree.items():
            what = f"fd {d.fd} of process {pid} ({_describe(diag.get(ino))})"
            sk = diag.get(ino)
            if sk is None:
                raise UnsupportedError(f"{what}: the kernel does not list it, not supported yet")
            if (sk.peer and sk.peer not in tree) or pending.get(ino, (ino,))[0] not in tree:
                outside = diag.get(sk.peer)
                reachable = (
                    sk.type == socket.SOCK_DGRAM and outside is not None
                    and outside.name[:1] in (b"\0", b"/")
                )  # fmt: skip
                if reachable and options.ext_unix_sk:
                    state.setdefault("external", {})[ino] = outside.name
                    continue
                hint = ": dump with --ext-unix-sk to connect it to that name again" if (
                    reachable
                ) else ", not supported yet"  # fmt: skip
                raise UnsupportedError(
                    f"{what} is connected to a socket outside the process tree"
                    f"{_named(outside)}{hint}"
                )
            for client in sk.icons:
                if client not in tree:
                    raise UnsupportedError(
                        f"{what} has a connection not yet accepted from a socket outside the "
                        "process tree, not supported yet"
                    )
            if ino in pending and sk.wqueue:
                if options.leave_running:
                    raise UnsupportedError(
                        f"{what} has sent data on a connection not yet accepted, which "
                        "torpor reads only by accepting it: not with --leave-running"
                    )
                state.setdefault("unaccepted_data", set()).add(ino)
            if sk.type == socket.SOCK_DGRAM and sk.peer_gone:
                raise UnsupportedError(
                    f"{what} is connected to a socket since closed, not supported yet"
                )
        state.update(diag=diag, tree=tree, pending=pending, listeners=listeners)

    def dump(self, ctx, d, state, fown):
        sk = state["diag"][d.inode]
        what = f"fd {d.fd} of process {ctx.pid} ({_describe(sk)})"
        listener, index = state["pending"].get(d.inode, (0, 0))
        entry = pb.UnixSkEntry(
            id=0,
            ino=sk.ino,
            type=sk.type,
            state=sk.state,
            flags=d.flags & ~os.O_CLOEXEC,
            uflags=0,
            backlog=sk.wqueue if sk.state == TCP_LISTEN else 0,
            peer=sk.peer or listener,
            fown=fown,
            name=sk.name,
        )
        if listener:
            entry.torpor_pending_index = index
        if d.inode in state.get("external", {}):
            entry.uflags |= UNIX_EXTERN
            entry.torpor_peer_name = state["external"][d.inode]
        if sk.shutdown:
            entry.shutdown = sk.shutdown & (SEND_SHUTDOWN | RCV_SHUTDOWN)
        accepted_from = _accepted_from(sk, state["listeners"])
        if accepted_from:
            entry.torpor_accepted_from = accepted_from
        elif _shows_a_name_it_does_not_hold(sk):
            entry.torpor_name_free = True
        elif sk.name and not sk.name.startswith(b"\0"):
            if ctx.in_flight and not sk.name.startswith(b"/"):
                raise UnsupportedError(
                    f"a queued message carries {_describe(sk)}, bound to a relative path "
                    "from a directory torpor cannot know, not supported yet"
                )
            _dump_path(ctx.pid, sk, entry, what)
        state.setdefault("entries", {})[sk.ino] = entry
        with borrowed_socket(ctx.pid, d.fd) as sock:
            entry.opts.CopyFrom(options.dump(sock))
            peer_pid, uid, gid = struct.unpack(
                "iII", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            )
            if peer_pid:
                entry.torpor_peer_uid, entry.torpor_peer_gid = uid, gid
            if sk.type == socket.SOCK_STREAM and sk.state != TCP_LISTEN:
                _refuse_out_of_band(sock, what)
            if _may_queue(sk):
                messages = queues.peek(sock, what, entry.opts.so_passcred, ctx.carried.carry)
                _check_senders(entry, messages, state, what)
                state.setdefault("queued", []).append((entry, messages))
        return entry

    def describe(self, entry) -> str:
        states = {TCP_LISTEN: ", listening", TCP_ESTABLISHED: ", connected"}
        named = f" {_shown(entry.name)}" if entry.name else ""
        return f"a Unix {_TYPES.get(entry.type, 'socket')} socket{named}" + states.get(
            entry.state, ""
        )

    def write(self, images, state) -> None:
        queues.write(images, [*state.get("queued", ()), *_read_unaccepted(state)])

    def dump_done(self, state, killed) -> None:
        for sock in state.pop("accepted", ()):
            sock.close()

    def carried_files(self, images, entries) -> set[int]:
        if not images.has("sk-queues.img"):
            return set()
        ours = {entry.id for entry in entries}
        return {
            file_id
            for message, _ in images.read_with_payloads("sk-queues.img")
            if message.id_for in ours
            for scm in message.scm
            for file_id in scm.rights
        }

    # --- restore ---------------------------------------------------------------------------

    def restore_problem(self, entry, shell_job) -> str | None:
        name = _address_name(entry)
        if len(name) > UNIX_PATH_MAX - (0 if entry.name.startswith(b"\0") else 1):
            return f"a Unix socket's name is too long to bind again: {_shown(entry.name)}"
        if entry.type not in _TYPES:
            return f"a Unix socket has an unknown type {entry.type}"
        return None

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        tree = _RestoreTree.of(ctx, state)
        tree.contexts[ctx.image_pid] = ctx
        if entry.ino in tree.where:  # the other end of a pair made by an earlier process
            owner, parked = tree.where[entry.ino]
            got = take(ctx, owner, parked)
        elif entry.torpor_accepted_from or entry.torpor_name_free:
            got = tree.accept(ctx, entry)
        elif tree.is_pair(entry):
            got = tree.make_pair(ctx, entry)
        else:
            got = tree.make(ctx, entry)
            if entry.state == TCP_LISTEN:
                with _seen_as(ctx, entry):
                    ctx.task.call(X86_64, "listen", got, entry.backlog)
            elif tree.connects_later(entry):
                tree.connect_later.append(entry)
        place(ctx, got, fd, cloexec, always_set_flag=True)
        tree.where[entry.ino] = (ctx.image_pid, fd)

    def finish_tree(self, contexts, state) -> None:
        tree = state.get("tree")
        if tree is not None:
            tree.finish(contexts)


# --- dump helpers ----------------------------------------------------------------------------


def _describe(sk) -> str:
    if sk is None:
        return "a Unix socket"
    return f"a Unix {_TYPES.get(sk.type, 'socket')} socket{_named(sk)}"


def _named(sk) -> str:
    return f" {_shown(sk.name)}" if sk is not None and sk.name else ""


def _shown(name: bytes) -> str:
    if name.startswith(b"\0"):
        return "@" + name[1:].decode(errors="backslashreplace")
    return name.decode(errors="backslashreplace")


def _refuse_out_of_band(sock: socket.socket, what: str) -> None:
    """Refuse a stream socket holding an out-of-band byte (MSG_OOB): the peek of its queue
    reads past it, and the byte's place in the stream would be lost."""
    try:
        sock.recv(1, socket.MSG_OOB | socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # EINVAL: none waits (or SO_OOBINLINE keeps it in the stream)
        return
    raise UnsupportedError(f"{what} holds an out-of-band byte (MSG_OOB), not supported yet")


def _shows_a_name_it_does_not_hold(sk) -> bool:
    """Whether a connection shows an abstract name that no socket holds: it was accepted
    from a listener since closed (a socket bound to a name holds it: binding it fails)."""
    if sk.state != TCP_ESTABLISHED or not sk.peer or not sk.name.startswith(b"\0"):
        return False
    with socket.socket(socket.AF_UNIX, sk.type) as probe:
        try:
            probe.bind(sk.name)
        except OSError:
            return False
    return True


def _may_queue(sk) -> bool:
    """Whether the socket may hold queued messages (a stream one says how many bytes)."""
    return sk.state != TCP_LISTEN and bool(sk.rqueue or sk.type != socket.SOCK_STREAM)


def _accepted_from(sk, listeners) -> int:
    """The listening socket of the tree a connected socket was accepted from (it carries
    the listener's name, and a path name's socket file), or 0."""
    if sk.state != TCP_ESTABLISHED or not sk.name or not sk.peer:
        return 0
    for ino, listener in listeners.items():
        if listener.name == sk.name and listener.type == sk.type and listener.vfs_ino == sk.vfs_ino:
            return ino
    return 0


def _dump_path(pid: int, sk, entry, what: str) -> None:
    """Where the socket file of a path name is, its owner and mode, or that it was deleted."""
    name = os.fsdecode(sk.name)
    if not name.startswith("/"):  # bound from the working directory, it is assumed
        entry.name_dir = os.readlink(proc(pid, "cwd"))
    path = os.path.join(entry.name_dir, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        entry.deleted = True
    else:
        if st.st_ino != sk.vfs_ino or not stat.S_ISSOCK(st.st_mode):
            if not name.startswith("/"):
                raise UnsupportedError(
                    f"{what}: {path} is not its socket file (replaced, or bound from another "
                    "directory), not supported yet"
                )
            entry.deleted = True  # its file was deleted, and another one put at its path
            entry.torpor_name_ino = sk.vfs_ino
            return
        entry.file_perms.mode, entry.file_perms.uid, entry.file_perms.gid = (
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        )  # fmt: skip
    entry.torpor_name_ino = sk.vfs_ino


def _read_unaccepted(state) -> list:
    """The data clients wrote on connections not yet accepted, as (client's entry,
    messages) pairs: read by accepting the connections from a copy of their listener, in
    its order up to the last such one, as the last thing before the tree is killed (the
    accepted ends are held until then; torpor killed in between leaves the tree without
    those connections)."""
    clients = state.get("unaccepted_data")
    if not clients:
        return []
    found = []
    by_listener: dict[int, int] = {}
    for ino in clients:
        listener, index = state["pending"][ino]
        by_listener[listener] = max(by_listener.get(listener, 0), index + 1)
    accepted = state.setdefault("accepted", [])
    for listener, count in by_listener.items():
        pid, d = state["tree"][listener]
        with borrowed_socket(pid, d.fd) as copy:
            copy.setblocking(False)
            accepted.extend(copy.accept()[0] for _ in range(count))
    diag = sockdiag.unix_sockets()
    for sock in accepted:
        client = diag[os.fstat(sock.fileno()).st_ino].peer
        if client in clients:
            what = f"the connection not yet accepted of {_describe(diag.get(client))}"
            messages = queues.peek(sock, what, True)
            for message, _ in messages:
                message.torpor_sent = True
            found.append((state["entries"][client], messages))
    return found


def _check_senders(entry, messages, state, what: str) -> None:
    """Refuse queued datagrams no socket of the restored tree could send again."""
    if entry.type != socket.SOCK_DGRAM:
        return
    diag, tree = state["diag"], state["tree"]
    names = {diag[ino].name for ino in tree if ino in diag and diag[ino].name}
    peer = diag.get(entry.peer)
    mutual = peer is not None and peer.peer == entry.ino
    for message, _ in messages:
        if message.addr and message.addr not in names:
            raise UnsupportedError(
                f"{what} holds a datagram from {_shown(message.addr)}, which no socket of the "
                "tree is bound to, not supported yet"
            )
        if not message.addr and not mutual and not entry.name:
            raise UnsupportedError(
                f"{what} holds a datagram from an unbound socket and has no name to be sent "
                "to again, not supported yet"
            )


# --- restore helpers -------------------------------------------------------------------------


def _address_name(entry) -> bytes:
    """The name to connect to: a relative path made absolute."""
    if entry.name_dir and not entry.name.startswith(b"\0"):
        return os.fsencode(os.path.join(entry.name_dir, os.fsdecode(entry.name)))
    return entry.name


@contextlib.contextmanager
def _seen_as(ctx, saved):
    """Run the enclosed calls in the task with the effective uid and gid that `saved` (a
    UnixSkEntry, or a process's creds) records for the peer, as SO_PEERCRED will report:
    the kernel takes them from the task that connects, listens or makes the pair, and the
    restoring task is still root then."""
    uid, gid = _peer_ids(saved)
    if (uid, gid) == (0, 0):
        yield
        return
    task = ctx.task
    task.call(X86_64, "setresgid", -1, gid, -1)
    task.call(X86_64, "setresuid", -1, uid, -1)
    try:
        yield
    finally:
        task.call(X86_64, "setresuid", -1, 0, -1)
        task.call(X86_64, "setresgid", -1, 0, -1)


def _peer_ids(saved) -> tuple[int, int]:
    if isinstance(saved, tuple):
        return saved
    if saved is None or not saved.HasField("torpor_peer_uid"):
        return 0, 0
    return saved.torpor_peer_uid, saved.torpor_peer_gid


def _process_creds(ctx) -> tuple[int, int]:
    """The effective uid and gid the process will have (its saved credentials)."""
    core = ctx.core.thread_core
    return (core.creds.euid, core.creds.egid) if core.HasField("creds") else (0, 0)


def _bind_unseen(ctx, fd: int, entry, address: bytes) -> int:
    """Bind a socket whose file was deleted at dump (another file may be at its path now)
    to its name from inside a private directory made the task's root for the call: it gets
    its name, and its file is removed with the directory. bind's result (or -errno)."""
    import shutil  # here, not at start-up: tempfile and shutil cost every command milliseconds
    import tempfile

    task = ctx.task
    name = os.fsdecode(entry.name)
    hidden = tempfile.mkdtemp(prefix=".torpor-bind-")
    try:
        inside = entry.name_dir if not name.startswith("/") else os.path.dirname(name)
        os.makedirs(os.path.join(hidden, inside.lstrip("/")), exist_ok=True)
        old_root = task.call(
            X86_64, "openat", AT_FDCWD, task.put(b"/\0"), os.O_PATH | os.O_DIRECTORY, 0
        )
        task.call(X86_64, "chroot", task.put(os.fsencode(hidden) + b"\0"))
        try:
            task.call(X86_64, "chdir", task.put(os.fsencode(inside or "/") + b"\0"))
            return task.syscall(X86_64, "bind", fd, task.put(address), len(address))
        finally:
            task.call(X86_64, "fchdir", old_root)
            task.call(X86_64, "chroot", task.put(b".\0"))
            task.call(X86_64, "close", old_root)
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


def _carried_fds(message, contexts) -> list:
    """Copies in torpor (context managers) of the files a saved message carries, from the
    fds the restored tree has them at (parts.files made those no fd holds)."""
    shared = contexts[0].shared_files
    pids = {ctx.image_pid: ctx.pid for ctx in contexts}
    got = []
    for scm in message.scm:
        for file_id in scm.rights:
            owner, fd = shared.files[file_id]
            got.append(borrowed(pids[owner], fd))
    return got


def _sockaddr(name: bytes) -> bytes:
    return struct.pack("=H", socket.AF_UNIX) + name + (b"" if name.startswith(b"\0") else b"\0")


class _RestoreTree:
    """The Unix sockets of a tree being restored: their entries by ino, where each one is
    (saved PID, fd), and the work left for when every process has its fds."""

    def __init__(self, ctx):
        self.entries = {}  # ino -> (file id, UnixSkEntry)
        for f in ctx.files.values():
            if f.HasField("usk"):
                self.entries[f.usk.ino] = (f.id, f.usk)
        self.where: dict[int, tuple[int, int]] = {}
        self.orphan_ends: dict[int, tuple[int, int]] = {}  # ino -> the other end, parked
        self.contexts: dict = {}  # saved PID -> RestoreContext
        self.connect_later: list = []
        self.in_use: set[int] | None = None  # socket file inodes live sockets are bound to

    @classmethod
    def of(cls, ctx, state) -> _RestoreTree:
        if "tree" not in state:
            state["tree"] = cls(ctx)
        return state["tree"]

    def entry(self, ino: int):
        return self.entries[ino][1] if ino in self.entries else None

    def is_pair(self, entry) -> bool:
        """Whether `entry` and its peer are connected to each other only (or its peer was
        closed): made together with socketpair."""
        if entry.state != TCP_ESTABLISHED:
            return False
        peer = self.entry(entry.peer)
        if peer is None:
            return entry.type != socket.SOCK_DGRAM
        return (
            peer.peer == entry.ino
            and not (peer.torpor_accepted_from or peer.torpor_name_free)
            and peer.state != TCP_LISTEN
        )

    def connects_later(self, entry) -> bool:
        """Whether `entry` connects once every socket exists: a connection not yet
        accepted, or a datagram socket sending to another one."""
        peer = self.entry(entry.peer)
        if peer is None:
            return bool(entry.uflags & UNIX_EXTERN)
        return peer.state == TCP_LISTEN or (
            entry.type == socket.SOCK_DGRAM and peer.peer != entry.ino
        )

    def make(self, ctx, entry) -> int:
        """A new socket for `entry` in the task, bound to its name."""
        fd = ctx.task.call(X86_64, "socket", socket.AF_UNIX, entry.type, 0)
        self._set_flags(ctx, fd, entry)
        self._bind(ctx, fd, entry)
        return fd

    def make_pair(self, ctx, entry) -> int:
        task = ctx.task
        out = task.reserve(8)
        with _seen_as(ctx, entry):
            task.call(X86_64, "socketpair", socket.AF_UNIX, entry.type, 0, out)
        ours, other = struct.unpack("<ii", task.read(out, 8))
        other = park(ctx, other)
        peer = self.entry(entry.peer)
        self._set_flags(ctx, ours, entry)
        self._bind(ctx, ours, entry)
        if peer is None:
            self.orphan_ends[entry.ino] = (ctx.image_pid, other)
        else:
            self._set_flags(ctx, other, peer)
            self._bind(ctx, other, peer)
            self.where[peer.ino] = (ctx.image_pid, other)
        return ours

    def accept(self, ctx, entry) -> int:
        """The connection `entry` was accepted from its listener, made again: the client
        connects from its own process (made here and parked if its process comes later),
        and this process accepts."""
        task = ctx.task
        listener = self.entry(entry.torpor_accepted_from)
        if entry.torpor_name_free:  # its listener is gone: a stand-in with the name, always
            listener = pb.UnixSkEntry(
                id=0,
                ino=0,
                type=entry.type,
                state=TCP_LISTEN,
                flags=0,
                uflags=0,
                backlog=1,
                peer=0,
                fown=entry.fown,
                name=entry.name,
            )
        client = self.entry(entry.peer)
        if listener is None or client is None:
            raise RestoreError(f"a Unix socket {entry.ino} was accepted from a socket not saved")
        address = _sockaddr(_address_name(listener))
        with ExitStack() as cleanup:
            if listener.ino in self.where:
                owner, lfd = self.where[listener.ino]
                lfd = take(ctx, owner, lfd)
            else:  # a stand-in with its name, until the listener itself is made
                lfd = task.call(X86_64, "socket", socket.AF_UNIX, listener.type, 0)
                self._bind(ctx, lfd, listener, stand_in=True)
                with _seen_as(ctx, client):  # what the client saw of the listener
                    task.call(X86_64, "listen", lfd, 1)
                if not listener.name.startswith(b"\0"):
                    cleanup.callback(os.unlink, os.fsdecode(_address_name(listener)))
            cleanup.callback(task.call, X86_64, "close", lfd)
            if client.ino in self.where:
                owner, cfd = self.where[client.ino]
                client_ctx = self.contexts[owner]
                with _seen_as(client_ctx, entry):  # what the accepted end saw of the client
                    client_ctx.task.call(
                        X86_64, "connect", cfd, client_ctx.task.put(address), len(address)
                    )
            else:
                cfd = self.make(ctx, client)
                with _seen_as(ctx, entry):
                    task.call(X86_64, "connect", cfd, task.put(address), len(address))
                self.where[client.ino] = (ctx.image_pid, park(ctx, cfd))
            got = task.call(X86_64, "accept4", lfd, 0, 0, 0)
        self._set_flags(ctx, got, entry)
        return got

    def _set_flags(self, ctx, fd: int, entry) -> None:
        """The open file's status flags (O_NONBLOCK, ...); O_ASYNC is parts.files' to set."""
        if entry.flags & SETFL_FLAGS:
            ctx.task.call(X86_64, "fcntl", fd, F_SETFL, entry.flags & SETFL_FLAGS)

    def _bind(self, ctx, fd: int, entry, stand_in: bool = False) -> None:
        """Bind `fd` to the name of `entry` (none: nothing to do)."""
        if not entry.name:
            return
        task = ctx.task
        address = _sockaddr(entry.name)
        if entry.deleted and not stand_in:
            got = _bind_unseen(ctx, fd, entry, address)
        else:
            if not entry.name.startswith(b"\0"):
                path = os.fsdecode(_address_name(entry))
                self._clear_path(path, entry)
                if entry.name_dir:  # bound as it was, relative to its directory
                    task.call(X86_64, "chdir", task.put(os.fsencode(entry.name_dir) + b"\0"))
            got = task.syscall(X86_64, "bind", fd, task.put(address), len(address))
        if got < 0:
            raise RestoreError(
                f"cannot bind a Unix socket to {_shown(entry.name)}: {os.strerror(-got)}"
            )
        if entry.name.startswith(b"\0") or stand_in or entry.deleted:
            return
        if entry.HasField("file_perms"):
            perms = entry.file_perms
            os.chown(path, perms.uid, perms.gid, follow_symlinks=False)
            os.chmod(path, stat.S_IMODE(perms.mode), follow_symlinks=False)

    def _clear_path(self, path: str, entry) -> None:
        """Remove the socket file the dumped socket left at `path`; anything else there
        (another file, a socket file a live socket is bound to) stops the restore."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if self.in_use is None:
            self.in_use = {sk.vfs_ino for sk in sockdiag.unix_sockets().values() if sk.vfs_ino}
        if (
            not stat.S_ISSOCK(st.st_mode)
            or st.st_ino != entry.torpor_name_ino
            or st.st_ino in self.in_use
        ):
            raise RestoreError(f"cannot bind a Unix socket to {path}: the path is in use")
        os.unlink(path)

    # --- once every process has its fds ----------------------------------------------------

    def finish(self, contexts) -> None:
        with ExitStack() as stack:
            socks = {}  # ino (or ("orphan", ino): the closed peer's end) -> socket
            for key, (owner, fd) in [
                *self.where.items(),
                *((("orphan", ino), at) for ino, at in self.orphan_ends.items()),
            ]:
                socks[key] = stack.enter_context(borrowed_socket(self.contexts[owner].pid, fd))
            self._connect(socks)
            for ino, sock in socks.items():
                if ino in self.entries:
                    options.restore_buffers(sock, self.entry(ino).opts)
            self._refill(contexts, socks)
            for ino, sock in socks.items():
                if ino in self.entries:
                    options.restore_rest(sock, self.entry(ino).opts)
            self._shut_down(socks)

    def _connect(self, socks) -> None:
        """Connections not yet accepted, in their listener's order, from the client's
        process; datagram sockets to the socket they send to."""
        for entry in sorted(self.connect_later, key=lambda e: (e.peer, e.torpor_pending_index)):
            peer = self.entry(entry.peer)
            name = _address_name(peer) if peer is not None else entry.torpor_peer_name
            address = _sockaddr(name)
            owner, fd = self.where[entry.ino]
            client = self.contexts[owner]
            task = client.task
            with _seen_as(client, _process_creds(client)):  # the accepting end sees the process
                got = task.syscall(X86_64, "connect", fd, task.put(address), len(address))
            if got < 0:
                raise RestoreError(
                    f"cannot connect a Unix socket to {_shown(name)} again: {os.strerror(-got)}"
                )

    def _refill(self, contexts, socks) -> None:
        images = contexts[0].images
        if not images.has("sk-queues.img"):
            return
        by_id = {file_id: entry for file_id, entry in self.entries.values()}
        by_name = {
            e.name: e.ino
            for _, e in self.entries.values()
            if e.name and not (e.torpor_accepted_from or e.torpor_name_free)
        }
        for message, data in images.read_with_payloads("sk-queues.img"):
            entry = by_id.get(message.id_for)
            if entry is None or entry.ino not in socks:
                continue  # another family's
            what = f"the Unix socket {_shown(entry.name) or entry.ino}"
            with ExitStack() as stack:
                sender, to = self._sender(entry, message, socks, by_name, stack)
                fds = [stack.enter_context(f) for f in _carried_fds(message, contexts)]
                queues.send(sender, message, data, to, what, fds)

    def _sender(self, entry, message, socks, by_name, stack):
        """The socket that sends a saved message to `entry` again (an unbound stand-in,
        closed with `stack`, for a datagram from an unbound socket), and the address it is
        sent to (None: its peer)."""
        own_address = _address_name(entry) or None
        missing = RestoreError(f"no socket can send the saved data of socket {entry.ino}")
        if message.torpor_sent:  # data it wrote before its connection was accepted
            return socks[entry.ino], None
        if entry.type != socket.SOCK_DGRAM or not message.addr:
            if ("orphan", entry.ino) in socks:
                return socks[("orphan", entry.ino)], None
            peer = self.entry(entry.peer)
            if peer is not None and peer.peer == entry.ino and peer.ino in socks:
                return socks[peer.ino], None
            if own_address is None or entry.type != socket.SOCK_DGRAM:
                raise missing
            return stack.enter_context(socket.socket(socket.AF_UNIX, entry.type)), own_address
        sender_ino = by_name.get(message.addr)
        if sender_ino not in socks:
            raise missing
        sender = self.entry(sender_ino)
        return socks[sender_ino], (None if sender.peer == entry.ino else own_address)

    def _shut_down(self, socks) -> None:
        for ino, sock in socks.items():
            entry = self.entry(ino) if ino in self.entries else None
            if entry is None or not entry.shutdown:
                continue
            how = entry.shutdown
            stream_pair = entry.type != socket.SOCK_DGRAM and ino not in self.orphan_ends
            if stream_pair:
                how &= SEND_SHUTDOWN  # the peer's send shutdown is this one's receive side
            elif ino in self.orphan_ends:
                how = 0  # closing the other end shuts both directions
            if how:
                sock.shutdown({1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}[how])


KIND = UnixSocket()
