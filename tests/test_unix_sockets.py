"""Unix sockets beyond the unixsk workload: what the dump refuses (and leaves working), a
restore that finds a name taken, and a real asyncio server on a Unix socket.

The unixsk workload (tests/workloads/unixsk.c, run by test_end_to_end for both bitnesses,
also with leave_running) covers every shape that is saved; here are the edges.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import harness
import pytest

import torpor
from torpor.errors import RestoreError, UnsupportedError


@pytest.fixture
def programs(tmp_path):
    """Start Python programs (harness.start_python); kill them, and any restored PID the test
    adds to the list, at the end."""
    started: list[int] = []

    def start(code: str, name: str = "out"):
        proc = harness.start_python(code, tmp_path / name)
        started.append(proc.pid)
        return proc

    start.pids = started
    yield start
    for pid in started:
        harness.kill_tree(pid, pid)
        deadline = time.monotonic() + 5
        try:  # reaped, so that no zombie of this test counts as a later test's leftover
            while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.01)
        except ChildProcessError:
            pass


def _one_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message


def _refused(pid: int, images, *words: str) -> None:
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(pid, str(images))
    message = str(exc.value)
    _one_line(message)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert list(images.iterdir()) == [], "the refused dump left files behind"


def _finishes_with(proc, out, text: str) -> None:
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=10) == 0, out.read_text()
    assert text in out.read_text(), out.read_text()


def _restored_says_ok(programs, proc, out, **dump_options) -> None:
    """Dump the program `proc` (killing it), restore it, signal it, and wait for its verdict
    in `out`: it must say OK."""
    images = out.parent / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images), **dump_options)
    proc.wait()
    assert harness.wait_gone(proc.pid, 5)
    restored = torpor.restore(str(images))
    programs.pids.append(restored)
    os.kill(restored, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not any(w in out.read_text() for w in ("OK", "BAD", "LOST", "Error")):
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)
    assert "OK" in out.read_text(), out.read_text()


WAIT = """
import os, signal, socket, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
"""


PENDING_WITH_DATA = """
import os, signal, socket, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
l = socket.socket(socket.AF_UNIX); l.bind("\\0torpor-pending-%d" % os.getpid()); l.listen()
quiet = socket.socket(socket.AF_UNIX); quiet.connect(l.getsockname())
c = socket.socket(socket.AF_UNIX); c.connect(l.getsockname()); c.send(b"early"); c.send(b" bird")
print("READY", flush=True)
signal.pause()
first, _ = l.accept(); second, _ = l.accept()
quiet.send(b"q")
ok = first.recv(1) == b"q" and second.recv(100) == b"early bird"
c.send(b"!"); second.send(b"?")
ok = ok and second.recv(1) == b"!" and c.recv(1) == b"?"
print("OK" if ok else "LOST", flush=True)
"""


def test_pending_connection_with_data_is_restored(programs, tmp_path):
    """A client that wrote on a connection its listener has not accepted yet, behind
    another pending connection: after the restore the listener accepts both in their
    order, the data is there and both talk."""
    proc = programs(PENDING_WITH_DATA)
    _restored_says_ok(programs, proc, tmp_path / "out")


def test_pending_connection_with_data_refuses_leave_running(programs, tmp_path):
    """Left running, the tree keeps that connection pending, so its data cannot be read:
    the dump refuses by name, and the program then accepts it intact."""
    proc = programs(PENDING_WITH_DATA)
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(proc.pid, str(images), leave_running=True)
    _one_line(str(exc.value))
    assert "not yet accepted" in str(exc.value) and "--leave-running" in str(exc.value)
    assert list(images.iterdir()) == []
    _finishes_with(proc, tmp_path / "out", "OK")


LISTENER_CLOSED = """
import os, signal, socket, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
name = b"\\0torpor-closed-%d" % os.getpid()
l = socket.socket(socket.AF_UNIX); l.bind(name); l.listen()
c = socket.socket(socket.AF_UNIX); c.connect(name); s, _ = l.accept(); l.close()
print("READY", flush=True)
signal.pause()
ok = s.getsockname() == name and c.getpeername() == name
c.send(b"x"); s.send(b"y"); ok = ok and s.recv(1) == b"x" and c.recv(1) == b"y"
again = socket.socket(socket.AF_UNIX); again.bind(name)  # the name is free, as it was
print("OK" if ok else "BAD", flush=True)
"""


def test_connection_whose_listener_closed_leaves_the_name_free(programs, tmp_path):
    """A connection accepted from a listener on an abstract name that has since closed
    shows that name but does not hold it: after the restore the ends talk, show the name,
    and another socket can still bind it."""
    proc = programs(LISTENER_CLOSED)
    _restored_says_ok(programs, proc, tmp_path / "out")


REPLACED = """
import os, signal, socket, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
path = {path!r}
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(path)
os.unlink(path)
with open(path, "w") as f:
    f.write("another file")
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind(b"\\0torpor-rx-%d" % os.getpid())
print("READY", flush=True)
signal.pause()
s.sendto(b"hi", r.getsockname())
data, sender = r.recvfrom(10)
ok = s.getsockname() == path and (data, sender) == (b"hi", path)
print("OK" if ok and open(path).read() == "another file" else "BAD", flush=True)
"""


def test_socket_whose_path_now_holds_another_file(programs, tmp_path):
    """A socket whose file was deleted and replaced by another file: restored with its
    name, sending from it, while the file now at its path stays as it is."""
    proc = programs(REPLACED.format(path=str(tmp_path / "rep.sock")))
    _restored_says_ok(programs, proc, tmp_path / "out")
    assert (tmp_path / "rep.sock").read_text() == "another file"


def test_out_of_band_byte_is_refused(programs, tmp_path):
    """A stream socket holding an out-of-band byte refuses the dump by name; the program
    then reads the byte and the data around it."""
    code = (
        WAIT
        + """
a, b = socket.socketpair()
a.send(b"before"); a.send(b"!", socket.MSG_OOB); a.send(b"after")
print("READY", flush=True)
signal.pause()
ok = b.recv(1, socket.MSG_OOB) == b"!" and b.recv(100) == b"before"
print("OK" if ok and b.recv(100) == b"after" else "LOST", flush=True)
"""
    )
    proc = programs(code)
    images = tmp_path / "images"
    images.mkdir()
    _refused(proc.pid, images, "out-of-band byte (MSG_OOB)", "Unix stream")
    _finishes_with(proc, tmp_path / "out", "OK")


def test_datagram_from_outside_sender_is_refused(programs, tmp_path):
    """A datagram queued from a socket outside the tree cannot be sent again from its
    address: refused by name; the program then receives it with that sender."""
    code = (
        WAIT
        + """
rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rx.bind("\\0torpor-rx-%d" % os.getpid())
print("READY", flush=True)
signal.pause()
data, sender = rx.recvfrom(100)
print("OK" if (data, sender) == (b"from outside", b"\\0torpor-outsider") else "LOST", flush=True)
"""
    )
    proc = programs(code)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as outsider:
        outsider.bind(b"\0torpor-outsider")
        outsider.sendto(b"from outside", f"\0torpor-rx-{proc.pid}".encode())
        images = tmp_path / "images"
        images.mkdir()
        _refused(proc.pid, images, "a datagram from @torpor-outsider", "no socket of the tree")
        _finishes_with(proc, tmp_path / "out", "OK")


IN_FLIGHT = """
import os, signal, socket, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
a, b = socket.socketpair()
# a file the sender closed, 5 bytes into it
f = os.open({passed!r}, os.O_RDONLY); os.read(f, 5)
# a pipe's read end, with data in the pipe; the program keeps the write end
r, w = os.pipe(); os.write(w, b"in the pipe")
# one end of a socketpair, with a message queued on it; the program keeps the other end
c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); d.send(b"queued on c")
# a socket that carries a file in turn: an eventfd with a count
e, g = socket.socketpair(); ev = os.eventfd(7)
socket.send_fds(g, [b"n"], [ev]); os.close(ev); g.close()
# a file the program still holds: the same open file after the restore
kept = os.open({passed!r}, os.O_RDONLY)
socket.send_fds(a, [b"one"], [f, r])
socket.send_fds(a, [b"two"], [c.fileno(), e.fileno(), kept])
for x in (f, r): os.close(x)
c.close(); e.close()
print("READY", flush=True)
signal.pause()
msg1, (f, r), _, _ = socket.recv_fds(b, 3, 2)
msg2, (c, e, kept2), _, _ = socket.recv_fds(b, 3, 3)
c, e = socket.socket(fileno=c), socket.socket(fileno=e)
checks = {{
    "messages": (msg1, msg2) == (b"one", b"two"),
    "file": os.read(f, 100) == b"gh the socket",
    "pipe": os.read(r, 100) == b"in the pipe" and os.write(w, b"!") == 1 and os.read(r, 1) == b"!",
    "queued": c.recv(100) == b"queued on c",
    "pair": c.send(b"to d") == 4 and d.recv(100) == b"to d",
}}
_, (ev,), _, _ = socket.recv_fds(e, 1, 1)
checks["nested"] = os.eventfd_read(ev) == 7
os.read(kept2, 3)
checks["shared"] = os.read(kept, 100) == b"ough the socket"
bad = [k for k, ok in checks.items() if not ok]
print("OK" if not bad else "BAD " + " ".join(bad), flush=True)
"""


def test_file_descriptors_in_flight_are_restored(programs, tmp_path):
    """Messages carrying file descriptors (SCM_RIGHTS) come back carrying them: a file its
    sender closed (at its offset), a pipe end (with the pipe's data), a socket (with its
    own queue), a socket that carries a file in turn, and a file the program still holds
    (the very same open file: reading one moves the other)."""
    (tmp_path / "passed").write_bytes(b"through the socket")
    proc = programs(IN_FLIGHT.format(passed=str(tmp_path / "passed")))
    _restored_says_ok(programs, proc, tmp_path / "out")


TCP_IN_FLIGHT = """
import os, signal, socket
signal.signal(signal.SIGUSR1, lambda *a: None)
l = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(l.getsockname())
s, _ = l.accept()
a, b = socket.socketpair()
socket.send_fds(a, [b"conn"], [s.fileno()])
s.close()
c.send(b"queued")
print("READY", flush=True)
signal.pause()
_, (fd,), _, _ = socket.recv_fds(b, 4, 1)
s = socket.socket(fileno=fd)
ok = s.recv(6) == b"queued"
s.send(b"back"); ok = ok and c.recv(4) == b"back"
print("OK" if ok else "BAD", flush=True)
"""


def test_tcp_connection_in_flight_is_restored(programs, tmp_path):
    """An accepted TCP connection handed over a Unix socket and closed by its sender (a
    pre-forking server's hand-off), dumped with tcp_established: it arrives after the
    restore with the data queued on it, and talks both ways."""
    proc = programs(TCP_IN_FLIGHT)
    _restored_says_ok(programs, proc, tmp_path / "out", tcp_established=True)


def test_file_descriptors_in_flight_of_a_kind_that_cannot_travel_are_refused(programs, tmp_path):
    """A message carrying an fd torpor cannot save from its own copy (an inotify instance)
    refuses the dump, naming it; the message is still there afterwards, working."""
    code = (
        WAIT
        + """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
a, b = socket.socketpair()
i = libc.inotify_init1(0)
socket.send_fds(a, [b"x"], [i])
os.close(i)
print("READY", flush=True)
signal.pause()
msg, fds, _, _ = socket.recv_fds(b, 1, 1)
print("OK" if os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:inotify" else "LOST")
"""
    )
    proc = programs(code)
    images = tmp_path / "images"
    images.mkdir()
    _refused(proc.pid, images, "carries an inotify instance", "a Unix socket")
    _finishes_with(proc, tmp_path / "out", "OK")


PEER_CREDS = """
import os, signal, socket, struct, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
def creds(s):
    return struct.unpack("iII", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
a, b = socket.socketpair()
l = socket.socket(socket.AF_UNIX); l.bind("\\0torpor-creds-%d" % os.getpid()); l.listen()
c = socket.socket(socket.AF_UNIX); c.connect(l.getsockname()); s, _ = l.accept()
w = socket.socket(socket.AF_UNIX); w.connect(l.getsockname())
me = (os.getpid(), os.geteuid(), os.getegid())
print("READY", creds(a) == creds(b) == creds(c) == creds(s) == me, flush=True)
signal.pause()
p, _ = l.accept()
got = [creds(x) for x in (a, b, c, s, w, p)]
print("OK" if got == [me] * 6 else f"BAD {got} {me}", flush=True)
"""


def test_peer_credentials_are_the_programs(programs, tmp_path):
    """SO_PEERCRED of a socketpair, an accepted connection (both ends) and a connection
    accepted after the restore names the restored process with its own uid and gid, not
    the root the restore runs as."""
    out = tmp_path / "out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            ["setpriv", "--reuid", "1234", "--regid", "4321", "--clear-groups",
             sys.executable, "-c", PEER_CREDS],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    programs.pids.append(proc.pid)
    deadline = time.monotonic() + 10
    while "READY" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.02)
    assert "READY True" in out.read_text(), out.read_text()
    _restored_says_ok(programs, proc, tmp_path / "out")


def test_restore_refused_while_the_name_is_taken(programs, tmp_path):
    """Restoring (in a new PID namespace) while the dumped program still holds its socket
    path fails with one line naming the path, leaves nothing behind, and the program keeps
    its socket."""
    path = tmp_path / "held.sock"
    code = (
        WAIT
        + f"""
l = socket.socket(socket.AF_UNIX); l.bind({str(path)!r}); l.listen()
print("READY", flush=True)
signal.pause()
c = socket.socket(socket.AF_UNIX); c.connect({str(path)!r})
a, _ = l.accept(); c.send(b"still mine")
print("OK" if a.recv(10) == b"still mine" else "LOST", flush=True)
"""
    )
    proc = programs(code)
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images), leave_running=True)
    before = sorted(p.name for p in images.iterdir())
    children = harness.child_pids(os.getpid())
    with pytest.raises(RestoreError) as exc:
        torpor.restore(str(images), pidns=True)
    _one_line(str(exc.value))
    assert str(path) in str(exc.value) and "in use" in str(exc.value), str(exc.value)
    assert sorted(p.name for p in images.iterdir()) == before
    assert harness.child_pids(os.getpid()) == children, "the failed restore left processes"
    _finishes_with(proc, tmp_path / "out", "OK")


ASYNCIO_SERVER = """
import asyncio, signal, sys
PATH = sys.argv[1] if len(sys.argv) > 1 else {path!r}
async def echo(reader, writer):
    while line := await reader.readline():
        writer.write(b"echo " + line)
        await writer.drain()
    writer.close()
async def main():
    await asyncio.start_unix_server(echo, PATH)
    reader, writer = await asyncio.open_unix_connection(PATH)
    n = 0
    while True:
        n += 1
        writer.write(b"tick %d\\n" % n)
        await writer.drain()
        line = await reader.readline()
        print(line.decode().strip(), flush=True)
        if n == 3:
            print("READY", flush=True)
        await asyncio.sleep(0.05)
asyncio.run(main())
"""


def test_asyncio_unix_server_goes_on_serving(programs, tmp_path):
    """An asyncio program (an epoll loop, its self-pipe socketpair, a listening Unix
    socket and a client of its own) restored mid-life goes on talking to itself and
    answers a new client."""
    path = tmp_path / "echo.sock"
    out = tmp_path / "out"
    proc = programs(ASYNCIO_SERVER.format(path=str(path)))
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images))
    proc.wait()
    assert harness.wait_gone(proc.pid, 5)
    ticks_at_dump = out.read_text().count("echo tick")
    restored = torpor.restore(str(images))
    programs.pids.append(restored)
    deadline = time.monotonic() + 10
    while out.read_text().count("echo tick") < ticks_at_dump + 5:
        assert time.monotonic() < deadline, f"no ticks after the restore:\n{out.read_text()}"
        time.sleep(0.05)
    lines = [line for line in out.read_text().splitlines() if line.startswith("echo tick")]
    assert lines == [f"echo tick {n}" for n in range(1, len(lines) + 1)], lines
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"hello\n")
        assert client.recv(100) == b"echo hello\n"


def test_datagram_socket_connected_outside_needs_ext_unix_sk(programs, tmp_path):
    """A datagram socket connected to a named socket outside the tree (a syslog client's):
    refused with a hint, or, with ext_unix_sk, connected to that name again at restore, so
    that what the program sends afterwards reaches the outside socket."""
    name = f"\0torpor-outside-{os.getpid()}"
    code = (
        WAIT
        + f"""
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect({name!r})
print("READY", flush=True)
signal.pause()
c.send(b"after the restore")
print("OK", flush=True)
"""
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as outside:
        outside.bind(name)
        outside.settimeout(10)
        proc = programs(code)
        images = tmp_path / "images"
        images.mkdir()
        _refused(proc.pid, images, "outside the process tree @torpor-outside-", "--ext-unix-sk")
        torpor.dump(proc.pid, str(images), ext_unix_sk=True)
        proc.wait()
        assert harness.wait_gone(proc.pid, 5)
        restored = torpor.restore(str(images))
        programs.pids.append(restored)
        os.kill(restored, signal.SIGUSR1)
        assert outside.recv(100) == b"after the restore"
