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
        rf"127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)\), .*not supported yet"
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
