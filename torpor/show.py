"""`torpor show`: a readable summary of an image directory."""

from pathlib import Path

from rich.console import Console
from rich.table import Table

from torpor.arch import abi_for_cs
from torpor.images import ImageDir, constants
from torpor.kernel.procfs import PAGE_SIZE
from torpor.parts import cgroups
from torpor.parts import files as parts_files


def _vma_kind(status: int) -> str:
    for bit, name in (
        (constants.VMA_AREA_VDSO, "vdso"),
        (constants.VMA_AREA_VVAR, "vvar"),
        (constants.VMA_AREA_HEAP, "heap"),
        (constants.VMA_AREA_STACK, "stack"),
        (constants.VMA_AREA_MEMFD, "memfd"),
        (constants.VMA_FILE_PRIVATE, "file-private"),
        (constants.VMA_FILE_SHARED, "file-shared"),
        (constants.VMA_ANON_SHARED, "anon-shared"),
        (constants.VMA_ANON_PRIVATE, "anon"),
    ):
        if status & bit:
            return name
    return "?"


def show(images_dir) -> None:
    images = ImageDir(Path(images_dir))
    images.verify()
    console = Console()
    files = {f.id: f for f in images.read("files.img")}
    saved_cgroups = cgroups.load(images)
    for task in images.read("pstree.img"):
        core = images.read_one(f"core-{task.pid}.img")
        if core.tc.task_state == constants.TASK_DEAD:
            console.print(
                f"[bold]PID {task.pid}[/] zombie, wait status {core.tc.exit_code:#x}, "
                f"ppid {task.ppid} pgid {task.pgid} sid {task.sid}"
            )
            continue
        mm = images.read_one(f"mm-{task.pid}.img")
        gp = core.thread_info.gpregs
        abi = abi_for_cs(gp.cs)
        head, *pages = images.read(f"pagemap-{task.pid}.img")
        stored = sum(p.nr_pages for p in pages) * PAGE_SIZE
        exe = files.get(mm.exe_file_id)
        console.print(
            f"[bold]PID {task.pid}[/] ({core.tc.comm}) {abi.name if abi else '?'} "
            f"ppid {task.ppid} pgid {task.pgid} sid {task.sid}"
        )
        console.print(f"  exe {exe.reg.name if exe else '?'}, {len(task.threads)} threads")
        where = cgroups.describe(saved_cgroups, core)
        if where:
            console.print(f"  cgroups {where}", markup=False)
        console.print(
            f"  ip {gp.ip:#x} sp {gp.sp:#x}  {len(mm.vmas)} VMAs, "
            f"{stored // 1024} KiB of pages stored"
        )
        table = Table("start", "end", "prot", "kind", "file", box=None, padding=(0, 1))
        for v in mm.vmas:
            prot = "".join(c if v.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
            f = (
                files.get(v.shmid)
                if v.status & (constants.VMA_FILE_PRIVATE | constants.VMA_FILE_SHARED)
                and not v.status & constants.VMA_AREA_MEMFD
                else None
            )
            table.add_row(
                f"{v.start:#x}", f"{v.end:#x}", prot, _vma_kind(v.status), f.reg.name if f else ""
            )
        console.print(table)
        fds = images.read(f"fdinfo-{core.ids.files_id}.img")
        for fd in fds:
            f = files.get(fd.id)
            console.print(f"  fd {fd.fd}: {parts_files.describe(f) if f else 'no file'}")
        handled = [i + 1 for i, sa in enumerate(core.tc.sigactions) if sa.sigaction > 1]
        console.print(f"  {len(handled)} signal handlers, blocked mask {core.tc.blk_sigset:#x}")
    outside = parts_files.external_keys(files)
    for key, file_id in outside.items():
        console.print(
            f"outside end: {parts_files.describe(files[file_id])}: restore makes it again with "
            f"that side closed, or uses an fd handed in with --inherit-fd fd[N]:{key}"
        )
