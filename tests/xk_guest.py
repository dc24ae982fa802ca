"""The guest half of the cross-kernel tests, run under another kernel through the xk rig.

    xk_guest.py dump BINARY MODE PID WORKDIR IMAGES [TUNABLES]
        start BINARY (argv[1] MODE, "-" for none) with that PID, dump it
    xk_guest.py restore IMAGES WORKDIR RESULT
        check the images (torpor check -D), restore, signal, write the verdict to RESULT

Workloads run with LD_BIND_NOW=1: glibc's lazy-binding trampoline is chosen at start-up from
the CPU's features (xsavec where the CPU has it, which the emulated CPU of the rig lacks), so a
process that binds symbols lazily after moving to a CPU without that feature faults. TUNABLES,
when given, is the GLIBC_TUNABLES value that keeps glibc off the features the other side's
CPU lacks (AVX-512 on some hosts): the portable start torpor's README describes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LD_BIND_NOW": "1"}


def start(
    binary: str, mode: str | None, pid: int | None, workdir: str, tunables: str | None = None
) -> subprocess.Popen:
    """Start the workload (with PID `pid`, set through ns_last_pid) and wait for READY."""
    log = open(os.path.join(workdir, "log"), "ab")
    if pid is not None:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
    argv = ["setpriv", "--bounding-set", "-sys_resource", binary, *([mode] if mode else [])]
    env = dict(ENV, **({"GLIBC_TUNABLES": tunables} if tunables not in (None, "-") else {}))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while b"READY" not in open(os.path.join(workdir, "log"), "rb").read():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"workload did not get ready: {proc.poll()}")
        time.sleep(0.05)
    return proc


def dump(
    binary: str, mode: str, pid: str, workdir: str, images: str, tunables: str | None = None
) -> None:
    import torpor

    proc = start(binary, None if mode == "-" else mode, int(pid), workdir, tunables)
    if proc.pid != int(pid):
        proc.kill()
        raise SystemExit(f"the workload got PID {proc.pid}, not {pid}")
    torpor.dump(proc.pid, images)
    proc.wait()


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def restore(images: str, workdir: str, result: str) -> None:
    """Check, restore, tell the workload which vDSO functions now trap, signal it, record its
    end."""
    import torpor
    from torpor.restorer import check

    warnings = _Warnings()
    logging.getLogger("torpor").addHandler(warnings)
    out = {"warnings": warnings.messages}
    try:
        out["findings"] = [(f.topic, f.level, f.message) for f in check(images)]
        pid = torpor.restore(images)
    except torpor.TorporError as e:
        out["error"] = str(e)
    else:
        missing = []
        for message in warnings.messages:
            found = re.match(
                r"the running kernel's vDSO lacks (.*): calls to them will trap", message
            )
            if found:
                missing += found.group(1).split(", ")
        with open(os.path.join(workdir, "vdso-missing"), "w") as f:
            f.write("".join(f"{name}\n" for name in missing))
        time.sleep(0.5)
        os.kill(pid, signal.SIGUSR1)
        _, status = os.waitpid(pid, 0)
        out["status"] = status
    out["log"] = open(os.path.join(workdir, "log")).read()
    with open(result, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    {"dump": dump, "restore": restore}[sys.argv[1]](*sys.argv[2:])
