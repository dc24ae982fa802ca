"""Internet sockets torpor refuses to dump: each refusal is one line naming the fd, the
process and what the socket is, and the refused tree runs on with its sockets working."""

from __future__ import annotations

import os
import re
import signal

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError

# A TCP connection whose both ends are in the process; on SIGUSR1 a byte goes through it
# both ways and it prints OK.
CONNECTION = """
import signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
print("PORTS", listener.getsockname()[1], client.getsockname()[1], flush=True)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
client.send(b"x"); assert server.recv(1) == b"x"
server.send(b"y"); assert client.recv(1) == b"y"
print("OK", flush=True)
"""

# A TCP connection with data queued both ways; on SIGUSR1 it reads them back, talks both
# ways and accepts a new connection.
QUEUED = """
import signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
client.send(b"a" * 100000); server.send(b"b" * 500)
print("PORTS", listener.getsockname()[1], client.getsockname()[1], flush=True)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
client.settimeout(10); server.settimeout(10)
def read(sock, n):
    got = b""
    while len(got) < n:
        got += sock.recv(n - len(got))
    return got
assert read(server, 100000) == b"a" * 100000
assert read(client, 500) == b"b" * 500
client.send(b"x"); assert server.recv(1) == b"x"
server.send(b"y"); assert client.recv(1) == b"y"
again = socket.create_connection(listener.getsockname())
accepted, _ = listener.accept()
again.send(b"z"); assert accepted.recv(1) == b"z"
print("OK", flush=True)
"""

# A listener with one connection not yet accepted (its client end in the process too).
PENDING = """
import signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
print("PORTS", listener.getsockname()[1], flush=True)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
server, _ = listener.accept()
client.send(b"x"); assert server.recv(1) == b"x"
print("OK", flush=True)
"""

# A UDP socket with the send timestamp of a datagram it sent waiting on its error queue
# (SO_TIMESTAMPING); on SIGUSR1 it reads it and prints OK.
ERROR_QUEUED = """
import signal, socket
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
SO_TIMESTAMPING, TX_SOFTWARE, SOFTWARE = 37, 0x2, 0x10
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
udp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_SOFTWARE | SOFTWARE)
udp.sendto(b"stamped", sink.getsockname())
assert sink.recv(10) == b"stamped"
print("PORTS", udp.getsockname()[1], flush=True)
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
_, control, _, _ = udp.recvmsg(100, 512, socket.MSG_ERRQUEUE)
assert any(level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING for level, kind, _ in control)
print("OK", flush=True)
"""


@pytest.fixture
def program(tmp_path):
    procs = []

    def start(code: str):
        out = tmp_path / f"program-{len(procs)}.out"
        proc = harness.start_python(code, out)
        procs.append(proc)
        ports = next(line for line in out.read_text().splitlines() if line.startswith("PORTS"))
        return proc, out, [int(p) for p in ports.split()[1:]]

    yield start
    for proc in procs:
        harness.kill_tree(proc.pid, proc.pid)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _refused(pid: int, tmp_path) -> str:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as e:
        torpor.dump(pid, str(images))
    assert not list(images.iterdir()), "a refused dump left images behind"
    message = str(e.value)
    assert "\n" not in message
    return message


def _still_works(proc, out) -> None:
    os.kill(proc.pid, signal.SIGUSR1)
    assert proc.wait(timeout=30) == 0, out.read_text()
    assert "OK" in out.read_text()


def test_tcp_connection_is_refused_naming_it(program, tmp_path):
    proc, out, (listening, client) = program(CONNECTION)
    message = _refused(proc.pid, tmp_path)
    pattern = (
        rf"fd \d+ of process {proc.pid} is a TCP connection \(ESTABLISHED "
        rf"127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)\), dump with --tcp-established to save it"
    )
    found = re.fullmatch(pattern, message)
    assert found, message
    assert {int(found[1]), int(found[2])} <= {listening, client}
    _still_works(proc, out)


def test_listener_with_a_connection_not_accepted_is_refused(program, tmp_path):
    proc, out, (listening,) = program(PENDING)
    message = _refused(proc.pid, tmp_path)
    assert re.search(rf"fd \d+ of process {proc.pid} is a TCP", message), message
    _still_works(proc, out)


def test_udp_socket_with_an_error_queued_is_refused(program, tmp_path):
    """What waits on a socket's error queue (here a send timestamp) cannot be put back:
    refused by name; the timestamp is still there to read."""
    proc, out, (port,) = program(ERROR_QUEUED)
    message = _refused(proc.pid, tmp_path)
    pattern = (
        rf"fd \d+ of process {proc.pid} is a UDP socket 127\.0\.0\.1:{port} with an error not "
        r"yet read \(pending, or on its error queue\), not supported yet"
    )
    assert re.fullmatch(pattern, message), message
    _still_works(proc, out)


def _connections(ports) -> list[str]:
    """The lines of /proc/net/tcp for sockets on `ports` (local or remote)."""
    hexed = {f"{p:04X}" for p in ports}
    with open("/proc/net/tcp") as f:
        lines = f.read().splitlines()[1:]
    return [
        line
        for line in lines
        if line.split()[1].split(":")[1] in hexed or line.split()[2].split(":")[1] in hexed
    ]


def test_tcp_connection_restored_with_its_queues(program, tmp_path):
    """--tcp-established: both ends in the tree, on loopback; the data queued both ways is
    read back after the restore, fresh data goes both ways, the listener accepts. The
    killed tree's connection closed without a word: nothing of it is left in the kernel."""
    proc, out, ports = program(QUEUED)
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images), tcp_established=True)
    assert len(list(images.glob("tcp-stream-*.img"))) == 2
    proc.wait()
    assert harness.wait_gone(proc.pid, 5)
    assert not _connections(ports), "closing the dumped connection sent something"
    restored = torpor.restore(str(images))
    os.kill(restored, signal.SIGUSR1)
    _, status = os.waitpid(restored, 0)
    assert status == 0 and "OK" in out.read_text(), out.read_text()


def test_tcp_connection_left_running_works_on(program, tmp_path):
    """--tcp-established --leave-running: the connection leaves repair mode and carries on."""
    proc, out, _ = program(QUEUED)
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images), tcp_established=True, leave_running=True)
    _still_works(proc, out)
