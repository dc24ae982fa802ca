"""TCP connections whose peer is outside the tree: the network lock keeps the peer's
connection alive while the tree is down; --network-lock skip does not; --tcp-close gives
the program its connections closed; half-closed connections are refused by name.

The server is the workload tcppeer (both bitnesses) and its client is this test process:
outside the tree, on the same host, so the lock's rules meet its packets in the output
hook as they would meet a remote client's in the input hook. Every lock table is found
through libnftables (`list tables`).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import struct
import time

import command
import harness
import pytest
from command import assert_ok
from test_end_to_end import crit_decodes_every_image

import torpor
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import ImageDir
from torpor.kernel import nftables
from torpor.parts.sockets import netlock

BEFORE, DURING, ANSWER = 3000, 5000, 20000  # as in tests/workloads/tcppeer.c
TCP_INFO, SIOCOUTQ = 11, 0x5411
LIBNFTABLES = nftables.LIBRARY
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT"}


def pattern32(seed: int, i: int) -> int:
    """common.h's pattern32."""
    m = 0xFFFFFFFF
    x = ((seed * 0x9E3779B1) & m) ^ (((i + 0x7F4A7C15) & m) * 0x85EBCA6B & m)
    x ^= x >> 15
    x = x * 0x2C1B3C6D & m
    x ^= x >> 12
    return x | 1


def stream(seed: int, start: int, n: int) -> bytes:
    return bytes(pattern32(seed, i) & 0xFF for i in range(start, start + n))


def read_exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, f"the connection ended after {len(got)} of {n} bytes"
        got += chunk
    return got


def lock_tables() -> list[str]:
    """This host's nftables tables of family inet, as libnftables lists them (through the
    real library, whatever a test made torpor load)."""
    with nftables.Nftables(LIBNFTABLES) as nft:
        listed = nft.run("list tables\n").splitlines()
    return [line.split()[2] for line in listed if line.startswith("table inet ")]


def locks_of(pid: int) -> list[str]:
    """The lock tables of dumps of the tree rooted at `pid`."""
    return [name for name in lock_tables() if name.startswith(f"torpor-{pid}-")]


def tcp_state(sock: socket.socket) -> str:
    state = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 8)[0]
    return TCP_STATES.get(state, str(state))


def unacknowledged(sock: socket.socket) -> int:
    return struct.unpack("=i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]


class Server:
    """tcppeer started in `mode` on `host`, with this process connected to it as its
    client, which sent it the first BEFORE bytes of its stream."""

    def __init__(self, start_workload, mode: str = "keep", host: str = "127.0.0.1"):
        self.w = start_workload(harness.Spec("tcppeer", mode, args=(host,)))
        self.host = host
        self.port = self._port()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.client = socket.socket(family, socket.SOCK_STREAM)
        self.client.settimeout(60)
        self.client.connect((host, self.port))
        self.client.sendall(stream(1, 0, BEFORE))
        self.w.wait_ready()

    def _port(self) -> int:
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while True:
            found = re.search(r"^PORT (\d+)$", self.w.log(), re.M)
            if found:
                return int(found[1])
            assert self.w.proc.poll() is None, self.w.log()
            assert time.monotonic() < deadline, "tcppeer printed no port"
            time.sleep(0.005)

    def send_during(self) -> None:
        """The rest of the client's stream, sent while the tree is down."""
        self.client.sendall(stream(1, BEFORE, DURING))

    def talk(self) -> None:
        """Ask the server to read everything, then the answer and one more exchange."""
        self.w.signal(signal.SIGUSR1)
        assert read_exactly(self.client, ANSWER) == stream(2, 0, ANSWER), self.w.log()
        self.client.sendall(b"ping")
        assert read_exactly(self.client, 4) == b"pong", self.w.log()
        self.w.verdict().assert_passed()

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def server(start_workload):
    made = []

    def make(*args, **kwargs):
        made.append(Server(start_workload, *args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def dump_killed(s: Server, tmp_path, **options):
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(s.w.pid, str(images), **options)
    s.w.reap_original()
    assert harness.wait_gone(s.w.pid, 5), f"pid {s.w.pid} still exists after the dump"
    return images


def restore(s: Server, images, **options) -> None:
    restored = torpor.restore(str(images), **options)
    assert restored == s.w.pid
    s.w.adopt(restored)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_outside_client_keeps_its_connection(server, tmp_path, host):
    """Dumped with --tcp-established (tree killed): the lock drops the client's packets
    while the tree is dead, so what it sends meanwhile waits in its send queue instead of
    meeting a RST, and reaches the restored server; the lock is gone after the restore."""
    s = server(host=host)
    images = dump_killed(s, tmp_path, tcp_established=True)
    inventory = ImageDir(images).verify()
    assert inventory.network_lock_method == netlock.METHOD_NFTABLES
    assert inventory.torpor_network_lock_table.startswith(f"torpor-{s.w.pid}-")
    assert locks_of(s.w.pid) == [inventory.torpor_network_lock_table]
    crit_decodes_every_image(images)

    s.send_during()
    assert tcp_state(s.client) == "ESTABLISHED"
    assert unacknowledged(s.client) == DURING, "the lock let the client's packets through"

    restore(s, images)
    assert locks_of(s.w.pid) == [], "the restore left the network lock"
    s.talk()


def test_failed_restore_keeps_the_lock(server, tmp_path):
    """A restore that fails (here: another socket holds the listener's port) leaves the
    lock: the client still waits, and a second restore takes its connection over."""
    s = server()
    images = dump_killed(s, tmp_path, tcp_established=True)
    (table,) = locks_of(s.w.pid)
    s.send_during()
    with socket.create_server((s.host, s.port)):
        with pytest.raises(RestoreError, match=r"cannot bind .* Address already in use"):
            torpor.restore(str(images))
        assert harness.wait_gone(s.w.pid, 5), "the failed restore left its tasks"
        assert locks_of(s.w.pid) == [table]
    assert unacknowledged(s.client) == DURING
    restore(s, images)
    assert locks_of(s.w.pid) == []
    s.talk()


def test_command_line(server, tmp_path):
    """The options through the command: dump --tcp-established --network-lock nftables,
    check -D --tcp-close names what the restore does with the connection and the lock,
    restore -d --tcp-close."""
    s = server(mode="closed")
    images = tmp_path / "images"
    images.mkdir()
    assert_ok(
        command.torpor(
            "dump",
            "-t",
            str(s.w.pid),
            "-D",
            str(images),
            "--tcp-established",
            "--network-lock",
            "nftables",
        )  # fmt: skip
    )
    s.w.reap_original()
    assert harness.wait_gone(s.w.pid, 5)
    (table,) = locks_of(s.w.pid)
    res = command.torpor("check", "-D", str(images), "--tcp-close")
    assert_ok(res)
    line = next(line for line in res.stdout.splitlines() if line.startswith("TCP connections"))
    assert "1 TCP connection(s), restored closed (--tcp-close)" in line, res.stdout
    assert f"the network lock inet {table} is removed once the tree runs" in line, res.stdout
    with command.child_subreaper():
        assert_ok(command.torpor("restore", "-D", str(images), "-d", "--tcp-close"))
        s.w.adopt(s.w.pid)
        _closed_after_restore(s)


def test_lock_is_removed_when_the_tree_runs_on(server, tmp_path):
    """--leave-running: the connection leaves repair mode and the lock goes before the dump
    returns; the server reads what the client sends next."""
    s = server()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(s.w.pid, str(images), tcp_established=True, leave_running=True)
    assert locks_of(s.w.pid) == []
    s.send_during()
    s.talk()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError], ids=["interrupted", "failed"])
def test_lock_is_removed_when_the_dump_stops(server, tmp_path, stop):
    """A dump interrupted or failing once the lock is in place (it stops in its first
    progress report, while it reads memory) removes the lock and lets the tree run on."""
    s = server()
    images = tmp_path / "images"
    images.mkdir()
    seen = []

    def progress(done, total):
        seen.append(locks_of(s.w.pid))
        raise stop("stopped")

    with pytest.raises(stop):
        torpor.dump(s.w.pid, str(images), tcp_established=True, progress=progress)
    assert seen and len(seen[0]) == 1, "the lock was not in place while the dump read memory"
    assert locks_of(s.w.pid) == []
    assert not list(images.iterdir())
    s.send_during()
    s.talk()


def test_refused_when_the_library_is_missing(server, tmp_path, monkeypatch):
    """Without libnftables a connection with a peer outside cannot be locked: the dump
    refuses in one line naming the fd, the connection and the cause; the tree runs on."""
    monkeypatch.setattr(nftables, "LIBRARY", "libnftables-missing.so.1")
    s = server()
    message = _refused(s, tmp_path)
    pattern = (
        rf"fd \d+ of process {s.w.pid} is a TCP connection \(127\.0\.0\.1:{s.port} -> "
        rf"127\.0\.0\.1:{s.client.getsockname()[1]}\) whose peer is outside the tree, and the "
        r"network cannot be locked: libnftables-missing\.so\.1 cannot be loaded \(install the "
        r"package libnftables1\); dump with --network-lock skip .*"
    )
    assert re.fullmatch(pattern, message), message
    s.send_during()
    s.talk()


def test_refused_when_nftables_refuses(server, tmp_path, monkeypatch):
    """nftables refusing the table (here: a name longer than it takes) refuses the dump
    with nft's reason; nothing is left and the tree runs on."""
    monkeypatch.setattr(netlock, "table_name", lambda root: "torpor-" + "x" * 300)
    s = server()
    message = _refused(s, tmp_path)
    assert "outside the tree, and the network cannot be locked: name too long, " in message
    assert not [name for name in lock_tables() if name.startswith("torpor-xxx")]
    s.send_during()
    s.talk()


def _refused(s: Server, tmp_path) -> str:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as e:
        torpor.dump(s.w.pid, str(images), tcp_established=True)
    assert not list(images.iterdir())
    assert locks_of(s.w.pid) == []
    message = str(e.value)
    assert "\n" not in message
    return message


# Both ends of a connection in one process (as test_sockets' QUEUED, smaller).
BOTH_ENDS = """
import signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
client.send(b"a" * 1000)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
client.settimeout(10); server.settimeout(10)
got = b""
while len(got) < 1000:
    got += server.recv(1000)
assert got == b"a" * 1000
server.send(b"y"); assert client.recv(1) == b"y"
print("OK", flush=True)
"""


def test_connection_inside_the_tree_needs_no_lock(tmp_path, monkeypatch):
    """Both ends in the tree are both in repair mode while it is down: no lock is made, so
    a dump without libnftables still saves them, and they work after the restore."""
    monkeypatch.setattr(nftables, "LIBRARY", "libnftables-missing.so.1")
    out = tmp_path / "program.out"
    proc = harness.start_python(BOTH_ENDS, out)
    try:
        images = tmp_path / "images"
        images.mkdir()
        torpor.dump(proc.pid, str(images), tcp_established=True)
        proc.wait()
        assert harness.wait_gone(proc.pid, 5)
        assert not ImageDir(images).verify().torpor_network_lock_table
        restored = torpor.restore(str(images))
        os.kill(restored, signal.SIGUSR1)
        _, status = os.waitpid(restored, 0)
        assert status == 0 and "OK" in out.read_text(), out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_skip_lets_the_peer_connection_die(server, tmp_path):
    """--network-lock skip: no lock; what the client sends while the tree is dead is
    answered with a RST, and its connection is reset (what the option risks)."""
    s = server()
    images = dump_killed(s, tmp_path, tcp_established=True, network_lock="skip")
    inventory = ImageDir(images).verify()
    assert inventory.network_lock_method == netlock.METHOD_SKIP
    assert not inventory.torpor_network_lock_table
    assert locks_of(s.w.pid) == []
    s.send_during()
    with pytest.raises(ConnectionResetError):
        s.client.recv(1)


def _closed_after_restore(s: Server) -> None:
    """The restored server, given its connection closed: nothing reached the client (its
    end is still established), the lock is gone (what the client sends now is answered
    with a RST), the server's fd is closed and its listener takes a new client."""
    assert tcp_state(s.client) == "ESTABLISHED", "the restore sent something to the client"
    assert locks_of(s.w.pid) == []
    family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as new:
        new.settimeout(60)
        new.connect((s.host, s.port))
        new.sendall(b"hello")
        s.w.signal(signal.SIGUSR1)
        assert read_exactly(new, 5) == b"world", s.w.log()
    s.w.verdict().assert_passed()
    s.client.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        s.client.recv(1)


def test_restore_tcp_close(server, tmp_path):
    """restore --tcp-close of a connection dumped with its state (and locked): the program
    finds its fd closed (CLOSE, POLLHUP, end of stream, EPIPE), nothing is sent to the
    client, the lock is removed, the listener works."""
    s = server(mode="closed")
    images = dump_killed(s, tmp_path, tcp_established=True)
    assert len(locks_of(s.w.pid)) == 1
    restore(s, images, tcp_close=True)
    _closed_after_restore(s)


def test_dump_tcp_close(server, tmp_path):
    """dump --tcp-close (CRIU's): the connection is saved without its state (no
    tcp-stream image, no lock), the images say so, a restore without --tcp-close refuses
    them and leaves nothing, one with it gives the program its connection closed."""
    s = server(mode="closed")
    images = dump_killed(s, tmp_path, tcp_close=True)
    inventory = ImageDir(images).verify()
    assert inventory.tcp_close and not inventory.torpor_network_lock_table
    assert not list(images.glob("tcp-stream-*.img"))
    crit_decodes_every_image(images)
    with pytest.raises(RestoreError, match=r"dumped with --tcp-close: restore them with"):
        torpor.restore(str(images))
    assert harness.pid_alive(s.w.pid) is False
    # the dumped tree's closing reset the client's end (it had unread data)
    with pytest.raises(ConnectionResetError):
        s.client.recv(1)
    restored = torpor.restore(str(images), tcp_close=True)
    s.w.adopt(restored)
    family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as new:
        new.settimeout(60)
        new.connect((s.host, s.port))
        new.sendall(b"hello")
        s.w.signal(signal.SIGUSR1)
        assert read_exactly(new, 5) == b"world", s.w.log()
    s.w.verdict().assert_passed()


# A connection from the program to this test's listener, half closed: by the test
# (CLOSE_WAIT in the program) or by the program (FIN_WAIT2). READY once it is in that
# state; on SIGUSR1 the open direction still carries data.
HALF_CLOSED = """
import signal, socket, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
port, how = int(sys.argv[1]), sys.argv[2]
conn = socket.create_connection(("127.0.0.1", port))
conn.settimeout(10)
want = 8 if how == "peer" else 5  # CLOSE_WAIT, FIN_WAIT2
if how == "peer":
    assert conn.recv(1) == b""
else:
    conn.shutdown(socket.SHUT_WR)
deadline = time.monotonic() + 10
while conn.getsockopt(socket.IPPROTO_TCP, 11, 8)[0] != want:
    assert time.monotonic() < deadline, "the connection did not reach its state"
    time.sleep(0.001)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
if how == "peer":
    conn.sendall(b"bye")
else:
    assert conn.recv(3) == b"bye"
print("OK", flush=True)
"""


@pytest.mark.parametrize(
    ("how", "state"), [("peer", "CLOSE_WAIT"), ("self", "FIN_WAIT2")], ids=["peer", "self"]
)
def test_half_closed_connection_is_refused_naming_its_state(tmp_path, how, state):
    """A connection shut down one way (by its peer: CLOSE_WAIT; by the program: FIN_WAIT2)
    refuses the dump, even with --tcp-established, naming its state; no lock is left and
    the program uses the connection afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    out = tmp_path / "program.out"
    code = f"import sys; sys.argv[1:] = [{listener.getsockname()[1]}, {how!r}]\n" + HALF_CLOSED
    with listener:
        proc = _start_after_accept(code, out, listener, how)
    peer, conn = proc
    try:
        images = tmp_path / "images"
        images.mkdir()
        with pytest.raises(UnsupportedError) as e:
            torpor.dump(peer.pid, str(images), tcp_established=True)
        pattern = (
            rf"fd \d+ of process {peer.pid} is a TCP connection \({state} 127\.0\.0\.1:\d+ "
            rf"-> 127\.0\.0\.1:\d+\), not supported yet"
        )
        assert re.fullmatch(pattern, str(e.value)), str(e.value)
        assert not list(images.iterdir()) and locks_of(peer.pid) == []
        os.kill(peer.pid, signal.SIGUSR1)
        if how == "peer":
            conn.settimeout(30)
            assert read_exactly(conn, 3) == b"bye"
        else:
            conn.sendall(b"bye")
        assert peer.wait(timeout=30) == 0, out.read_text()
        assert "OK" in out.read_text()
    finally:
        conn.close()
        harness.kill_tree(peer.pid, peer.pid)
        if peer.poll() is None:
            peer.kill()
            peer.wait()


def _start_after_accept(code: str, out, listener: socket.socket, how: str):
    """Start the program, accept its connection, half close it as `how` says, wait for
    READY: (the program, this end of its connection)."""
    import subprocess
    import sys

    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    conn, _ = listener.accept()
    if how == "peer":
        conn.shutdown(socket.SHUT_WR)
    else:
        assert conn.recv(1) == b""
    deadline = time.monotonic() + 30
    while "READY" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the program did not get ready:\n{out.read_text()}")
        time.sleep(0.01)
    return proc, conn


def test_dump_tcp_close_takes_any_state(tmp_path):
    """dump --tcp-close saves a half-closed connection (CLOSE_WAIT), which --tcp-established
    refuses, without reading it; restored closed, the program's write on it fails."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    out = tmp_path / "program.out"
    code = f"import sys; sys.argv[1:] = [{listener.getsockname()[1]}, 'peer']\n" + HALF_CLOSED
    with listener:
        peer, conn = _start_after_accept(code, out, listener, "peer")
    try:
        images = tmp_path / "images"
        images.mkdir()
        torpor.dump(peer.pid, str(images), tcp_close=True)
        peer.wait()
        assert harness.wait_gone(peer.pid, 5)
        saved = [f.isk for f in ImageDir(images).read("files.img") if f.HasField("isk")]
        assert [e.state for e in saved] == [8], saved  # CLOSE_WAIT
        restored = torpor.restore(str(images), tcp_close=True)
        os.kill(restored, signal.SIGUSR1)
        _, status = os.waitpid(restored, 0)
        assert os.waitstatus_to_exitcode(status) == 1, out.read_text()
        assert "BrokenPipeError" in out.read_text(), out.read_text()
    finally:
        conn.close()
        harness.kill_tree(peer.pid, peer.pid)
        if peer.poll() is None:
            peer.kill()
            peer.wait()
