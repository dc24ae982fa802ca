"""Privilege: inside a user namespace of its own (`unshare -Urpf --mount-proc`, where the caller
has every capability over its namespaces and none over the host's), torpor checkpoints and
restores what it could have created itself, and a refusal names the privilege really missing.
"""

from __future__ import annotations

import shutil
import subprocess

import command
import harness

# Run inside the namespaces: $1 the workload, $2 its mode; the directory is the cwd.
SCRIPT = r"""
set -u
"$1" $2 > log 2>&1 &
p=$!
for i in $(seq 200); do grep -q READY log && break; sleep 0.05; done
mkdir img
if ! "$TORPOR" dump -t $p -D img 2> dump.err; then echo "DUMP REFUSED"; cat dump.err; exit 0; fi
wait $p 2>/dev/null
if "$TORPOR" restore -D img -d 2> restore.err; then echo "TIMENS RESTORED"; exit 1; fi
cat restore.err
"$TORPOR" restore -D img -d --no-timens --pidfile pid || exit 1
kill -USR1 $(cat pid)
for i in $(seq 200); do grep -q "PASS\|FAIL" log && break; sleep 0.05; done
cat log
"""


def _in_user_namespace(tmp_path, workload: str, mode: str = "") -> str:
    assert shutil.which("unshare"), "util-linux unshare is missing"
    script = tmp_path / "inside.sh"
    script.write_text(SCRIPT)
    tmp_path.chmod(0o777)
    res = subprocess.run(
        ["unshare", "-Urpf", "--mount-proc", "bash", str(script), workload, mode],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**command.cli_env(), "TORPOR": command.TORPOR},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_restore_inside_own_user_namespace(built_workloads, flavour, tmp_path):
    """A process waiting in pause(), dumped and restored inside the caller's own user and
    PID namespaces: carrying the clocks on is refused in one line naming CAP_SYS_ADMIN
    (torpor could not leave the time namespace again); with --no-timens it comes back and
    its checks pass once signalled. (A call with a timeout would come back with EINTR here:
    the time it had left is read from /proc/timer_list, which needs the initial namespace.)"""
    out = _in_user_namespace(tmp_path, str(harness.binary("syscalls", flavour)), "pause")
    assert "DUMP REFUSED" not in out, out
    refusal = [line for line in out.splitlines() if line.startswith("torpor: error")]
    assert len(refusal) == 1 and "CAP_SYS_ADMIN" in refusal[0] and "--no-timens" in refusal[0]
    assert "PASS syscalls" in out, out


def test_seccomp_inside_own_user_namespace_names_the_privilege(built_workloads, tmp_path):
    """A process under seccomp filters inside the caller's user namespace: the dump is
    refused naming PTRACE_O_SUSPEND_SECCOMP and CAP_SYS_ADMIN, not as a plain EPERM."""
    out = _in_user_namespace(tmp_path, str(harness.binary("seccomp", "64")), "shared")
    assert "DUMP REFUSED" in out, out
    assert "PTRACE_O_SUSPEND_SECCOMP" in out and "CAP_SYS_ADMIN" in out, out
