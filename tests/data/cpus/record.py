"""Record what torpor's CPU rules need to know of the CPU this runs on, as JSON on stdout:

    python tests/data/cpus/record.py NAME > tests/data/cpus/NAME.json

the CPU's name and flags (/proc/cpuinfo), the xsave components the kernel enables and where
CPUID leaf 0xD puts each, the capability words torpor records in cpuinfo.img, and the
NT_X86_XSTATE buffer of a sleeping `sleep` started as is and started portably (glibc kept
off AVX-512). test_cpu_portability.py plays these CPUs against each other on any host.
"""

import json
import subprocess
import sys
import time

from torpor.arch import xstate
from torpor.kernel import cpuid, ptrace
from torpor.parts import cpu
from torpor.remote import RemoteTask


def buffer_of(env: dict) -> str:
    child = subprocess.Popen(["sleep", "30"], env=env)
    try:
        time.sleep(0.3)
        task = RemoteTask.seize(child.pid)
        try:
            return ptrace.get_regset(child.pid, ptrace.NT_X86_XSTATE).hex()
        finally:
            task.detach()
    finally:
        child.kill()
        child.wait()


def main(name: str) -> None:
    info = open("/proc/cpuinfo").read().split("\n\n")[0]
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    features = cpuid.xfeatures()
    record = {
        "name": name,
        "model": fields.get("model name", ""),
        "flags": sorted(fields.get("flags", "").split()),
        "xfeatures": features,
        "offsets": {str(i): cpuid.cpuid(0xD, i)[1] for i in xstate.COMPONENTS if features >> i & 1},
        "capability": cpu.capability_words(),
        "xstate": buffer_of({"PATH": "/usr/bin:/bin"}),
        "xstate_portable": buffer_of(
            {"PATH": "/usr/bin:/bin", "GLIBC_TUNABLES": cpu.glibc_tunables(xstate._AVX512)}
        ),
    }
    json.dump(record, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
