"""The vDSO as the running kernel maps it: a task's vDSO layout from its maps, and the vDSO
this kernel gives an ABI, seen in a scratch child.

The restore compares the dumped vDSO with it (torpor.parts.vdso) and `torpor check` shows
it; it lives apart from parts.vdso, which needs the images and the restore context, so that
`torpor check` starts without loading those.
"""

import os

from torpor import vdso as vdsolib
from torpor.arch import X86_64
from torpor.errors import RestoreError
from torpor.kernel.procfs import read_maps
from torpor.remote import scratch_child


def layout_of(pid: int, own_names: bool = False) -> vdsolib.VdsoLayout:
    """The vDSO layout of task `pid`; its vvar mappings all named [vvar], as in an image
    (which keeps no names), unless `own_names`."""
    entries = [
        vdsolib.MapsEntry(
            m.start, m.end, "[vvar]" if m.name.startswith("[vvar") and not own_names else m.name
        )
        for m in read_maps(pid, with_flags=False)
        if m.name == "[vdso]" or m.name.startswith("[vvar")
    ]
    vdso = next((e for e in entries if e.name == "[vdso]"), None)
    if vdso is None:
        raise RestoreError("the kernel did not map a vDSO into the restored task")
    return vdsolib.VdsoLayout.from_maps(entries, vdso.start)


def kernel_vdso(abi, own_names: bool = False) -> tuple[bytes, vdsolib.VdsoLayout]:
    """The vDSO (bytes and layout) this kernel maps for `abi`, seen in a scratch child."""
    with scratch_child() as (pid, task):
        task.map_scratch()
        for m in read_maps(pid, with_flags=False):
            if m.name == "[vdso]" or m.name.startswith("[vvar"):
                task.call(X86_64, "munmap", m.start, m.size)
        got = task.syscall(X86_64, "arch_prctl", abi.map_vdso_code, 0x30000000)
        if got < 0:
            raise RestoreError(f"ARCH_MAP_VDSO failed ({os.strerror(-got)})")
        layout = layout_of(pid, own_names)
        return task.read(layout.vdso_start, layout.vdso_size), layout
