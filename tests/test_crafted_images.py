"""Crafted images (fields changed, digests recomputed: they are no secret) are refused with
one line before anything is created, never with a traceback, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness
import imagecraft
import pytest
from command import child_subreaper
from command import torpor as torpor_cli

import torpor
from torpor.errors import TorporError
from torpor.images import ImageDir, kind_of, pb
from torpor.images import constants as C
from torpor.kernel import procfs
from torpor.remote import MAP_PRIVATE, MAP_SHARED, PROT_WRITE


def _rewrite(images, mutate, pid: int) -> None:
    """Apply `mutate` to the decoded images and write them back with fresh digests."""
    src = ImageDir(images)
    src.verify()
    decoded = {}
    for name in os.listdir(images):
        if name == "inventory.img" or name.startswith("pages-"):
            continue
        reader = src.read_with_payloads if kind_of(name).payload_field else src.read
        decoded[name] = reader(name)
    inventory = src.read_one("inventory.img")
    mutate(decoded, pid)
    out = ImageDir(images)
    for name, entries in decoded.items():
        out.write(name, entries)
    for name in os.listdir(images):
        if name.startswith("pages-"):
            data = (images / name).read_bytes()
            os.unlink(images / name)
            with out.pages_writer(int(name[len("pages-") : -len(".img")])) as w:
                w.write(data)
    out.commit(inventory)


def _core(d, pid):
    return d[f"core-{pid}.img"][0]


def _mm(d, pid):
    return d[f"mm-{pid}.img"][0]


def empty_tree(d, pid):
    d["pstree.img"] = []


def zombie_root(d, pid):
    _core(d, pid).tc.task_state = 2


def kernel_ip(d, pid):
    _core(d, pid).thread_info.gpregs.ip = 0xFFFFFFFF81000000


def highest_sp(d, pid):
    _core(d, pid).thread_info.gpregs.sp = (1 << 64) - 1


def short_xstate(d, pid):
    _core(d, pid).thread_info.fpregs.torpor_xstate = bytes(100)


def kernel_handler(d, pid):
    _core(d, pid).tc.sigactions[9].sigaction = 1 << 63


def kernel_mapping(d, pid):
    vma = _mm(d, pid).vmas[0]
    vma.start, vma.end = 0xFFFF800000000000, 0xFFFF800000001000


def reversed_mapping(d, pid):
    vma = _mm(d, pid).vmas[0]
    vma.start, vma.end = vma.end, vma.start


def unaligned_mapping(d, pid):
    _mm(d, pid).vmas[0].end += 1


def unknown_file(d, pid):
    for name, entries in d.items():
        if name.startswith("fdinfo-"):
            for e in entries:
                e.id = 9999


CRAFTS = [
    empty_tree, zombie_root, kernel_ip, highest_sp, short_xstate, kernel_handler,
    kernel_mapping, reversed_mapping, unaligned_mapping, unknown_file,
]  # fmt: skip


@pytest.mark.parametrize("craft", CRAFTS, ids=lambda c: c.__name__)
def test_crafted_image_is_refused(craft, start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _rewrite(images, craft, w.pid)
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before, "images changed"


def test_memfd_pages_beyond_the_memfd_are_refused(start_workload, tmp_path):
    """A run of a memfd's saved contents (pagemap-shmem-ID.img) past the memfd's size."""
    w = start_workload("memfds")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)

    def craft(d, pid):
        name = min(n for n in d if n.startswith("pagemap-shmem-"))
        d[name][-1].vaddr += 1 << 30

    _rewrite(images, craft, w.pid)
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "pagemap-shmem-" in message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"


def _memfd_vmas(d):
    return [
        v
        for name, entries in d.items()
        if name.startswith("mm-")
        for v in entries[0].vmas
        if v.HasField("torpor_memfd_size")
    ]


def _memfd_smaller(d, pid):
    for vma in _memfd_vmas(d):
        vma.torpor_memfd_size = procfs.PAGE_SIZE


def _memfd_huge(d, pid):
    for vma in _memfd_vmas(d):
        vma.torpor_memfd_size = 1 << 63


@pytest.mark.parametrize(
    "craft, said",
    [(_memfd_smaller, "pagemap-shmem-"), (_memfd_huge, "larger than a file can be")],
    ids=["pages-beyond", "huge"],
)
def test_memfd_only_mapped_with_a_size_its_contents_do_not_fit_is_refused(
    craft, said, start_workload, tmp_path
):
    """The size a mapping saved of a memfd no fd holds (VmaEntry.torpor_memfd_size): too
    small for its saved contents, or larger than a file can be."""
    w = start_workload("memfds", "mapped")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _rewrite(images, craft, w.pid)
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert said in message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"


def test_a_saved_file_now_a_fifo_is_refused(start_workload, tmp_path):
    """The regular file a process had open replaced by a FIFO before the restore (opening
    it would block): refused at once, naming the path, nothing created."""
    w = start_workload("files")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    entries = ImageDir(images).read("files.img")
    regular = next(
        f.reg.name for f in entries
        if f.HasField("reg") and f.reg.name.startswith(str(tmp_path)) and os.path.isfile(f.reg.name)
    )  # fmt: skip
    os.unlink(regular)
    os.mkfifo(regular)
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert regular in message and "FIFO" in message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"


# --- through the command line, which must answer in time and in one line ---------------------


def _zombies(d):
    return [es[0] for n, es in d.items() if n.startswith("core-") and es[0].tc.task_state == 2]


def zombie_killed_by(sig):
    def craft(d, pid):
        for core in _zombies(d):
            core.tc.exit_code = sig

    craft.__name__ = f"zombie_killed_by_{sig}"
    return craft


def _vmas(d, pid, wanted):
    return [v for v in _mm(d, pid).vmas if v.status & wanted]


def _with_pages(d, pid, vmas):
    starts = [e.vaddr for e in d[f"pagemap-{pid}.img"][1:]]
    return [v for v in vmas if any(v.start <= a < v.end for a in starts)]


def huge_shmem_offset(d, pid):
    for name, entries in d.items():
        if name.startswith("mm-"):
            for v in entries[0].vmas:
                if v.status & C.VMA_ANON_SHARED:
                    v.pgoff = 1 << 63


def page_of_shared_file(d, pid):
    (vma,) = [v for v in _vmas(d, pid, C.VMA_FILE_SHARED) if v.prot & PROT_WRITE]
    d[f"pagemap-{pid}.img"].append(
        pb.pagemap_pb2.PagemapEntry(vaddr=vma.start, nr_pages=1, flags=C.PE_PRESENT)
    )


def shared_file_mapped_private(d, pid):
    for v in _vmas(d, pid, C.VMA_FILE_PRIVATE):
        v.flags = (v.flags & ~MAP_PRIVATE) | MAP_SHARED


def pages_beyond_end_of_file(d, pid):
    for v in _with_pages(d, pid, _vmas(d, pid, C.VMA_FILE_PRIVATE)):
        v.pgoff += 1 << 30  # the file ends long before: its pages there cannot be written


def _exe(d, pid):
    return next(f for f in d["files.img"] if f.id == _mm(d, pid).exe_file_id)


def exe_a_fifo(d, pid):
    exe = pb.fdinfo_pb2.FileEntry()
    exe.CopyFrom(_exe(d, pid))
    exe.id = exe.reg.id = max(f.id for f in d["files.img"]) + 1
    exe.reg.name = str(FIFO)
    exe.reg.ClearField("mode")  # as CRIU's images: nothing says what type the path was
    d["files.img"].append(exe)
    _mm(d, pid).exe_file_id = exe.id


def path_with_a_newline(d, pid):
    for f in d["files.img"]:
        if f.HasField("reg") and f.id == _mm(d, pid).exe_file_id:
            f.reg.name = "/nonexistent\ntorpor: error: a line the image wrote"


def timer_beyond_time_t(d, pid):
    _core(d, pid).tc.timers.virt.vsec = 1 << 63


def priority_beyond_any(d, pid):
    _core(d, pid).thread_core.sched_prio = 1 << 31


def group_beyond_any_pid(d, pid):
    d["pstree.img"][-1].pgid = (1 << 32) - 1


def owner_beyond_any_pid(d, pid):
    for f in d["files.img"]:
        if f.HasField("reg"):
            f.reg.fown.pid = 1 << 31


def wide_auxv(d, pid):
    _mm(d, pid).mm_saved_auxv[1] = 1 << 40


FIFO = Path("/tmp/torpor-crafted-fifo")

CLI_CRAFTS = [
    ("tree", zombie_killed_by(17), "zombie wait status 0x11"),
    ("tree", zombie_killed_by(28), "zombie wait status 0x1c"),
    ("tree", zombie_killed_by(19), "zombie wait status 0x13"),
    ("tree", huge_shmem_offset, "beyond what such an object holds"),
    ("memory", page_of_shared_file, "of a shared file mapping, whose file holds them"),
    ("memory", shared_file_mapped_private, "sharing flags"),
    ("memory", pages_beyond_end_of_file, "cannot write the saved pages"),
    ("counter", exe_a_fifo, "PR_SET_MM_MAP refused"),
    ("counter", path_with_a_newline, "/nonexistent\\ntorpor: error: a line the image wrote"),
    ("threads", timer_beyond_time_t, "a time no timer can have"),
    ("threads", priority_beyond_any, "scheduling priority 2147483648"),
    ("tree", group_beyond_any_pid, "has IDs no process can have"),
    ("counter", owner_beyond_any_pid, "SIGIO owner 2147483648"),
]
SPECS = {"tree": harness.Spec("tree", "family")}


def _dumped(start_workload, tmp_path, name):
    w = start_workload(SPECS.get(name, harness.Spec(name)))
    w.wait_ready()
    watched = {p: p.read_bytes() for p in w.cwd.iterdir() if p.is_file()}
    return w, harness.dump_killed(w, tmp_path), watched


def _judged(images, pids, watched):
    with child_subreaper():
        return imagecraft.restore_and_judge(images, pids, watched)


@pytest.mark.parametrize("name,craft,expected", CLI_CRAFTS, ids=[c[1].__name__ for c in CLI_CRAFTS])
def test_crafted_image_is_refused_by_the_command(name, craft, expected, start_workload, tmp_path):
    """Images that made a restore wait forever, fail with a traceback, print a line the
    image wrote or write into a mapped file: refused in one line, in time, nothing left,
    the images and the workload's files untouched."""
    if not FIFO.exists():
        os.mkfifo(FIFO)
    w, images, watched = _dumped(start_workload, tmp_path, name)
    pids = imagecraft.image_pids(images)
    _rewrite(images, craft, w.pid)
    outcome = _judged(images, pids, watched)
    assert not outcome.broken, outcome.broken
    assert outcome.status == 1 and expected in outcome.stderr, outcome.stderr


def test_a_path_not_utf8_is_refused(start_workload, tmp_path):
    """A path whose bytes are not UTF-8 (proto2 parsing hands it over as bytes)."""
    w, images, watched = _dumped(start_workload, tmp_path, "counter")
    index = next(i for i, f in enumerate(ImageDir(images).read("files.img")) if f.HasField("reg"))
    crafted = tmp_path / "crafted"
    mutant = imagecraft.Mutant(
        "files.img", (index, "reg", "name"), "raw",
        imagecraft._length_delimited(6, imagecraft.NOT_UTF8),
    )  # fmt: skip
    imagecraft.apply(images, crafted, mutant)
    outcome = _judged(crafted, imagecraft.image_pids(images), watched)
    assert not outcome.broken, outcome.broken
    assert "field reg.name is not a UTF-8 string" in outcome.stderr, outcome.stderr


def wide_flags(d, pid):
    _core(d, pid).tc.sigactions[9].flags = 1 << 40


def wide_sas(d, pid):
    _core(d, pid).thread_core.sas.ss_sp = 1 << 40


def test_ia32_words_must_fit_32_bits(built_workloads, tmp_path):
    """An ia32 task's handler flags, alternate stack and auxv are 32-bit words: wider ones
    are refused by name (they could not be packed into the compat structs)."""
    for what, craft in (
        ("flags 0x10000000000", wide_flags), ("stack 0x10000000000", wide_sas),
        ("auxv word does not fit", wide_auxv),
    ):  # fmt: skip
        workdir = tmp_path / what.split()[0]
        workdir.mkdir()
        w = harness.start(harness.Spec("counter"), "32", workdir)
        try:
            w.wait_ready()
            images = harness.dump_killed(w, workdir)
            _rewrite(images, craft, w.pid)
            outcome = _judged(images, imagecraft.image_pids(images), {})
        finally:
            w.kill()
        assert not outcome.broken, outcome.broken
        assert what in outcome.stderr, outcome.stderr


def test_a_zombie_killed_by_sigkill_is_restored(start_workload, tmp_path):
    """SIGKILL is the commonest end of a zombie, and its action cannot be set."""
    w, images, watched = _dumped(start_workload, tmp_path, "tree")
    pids = imagecraft.image_pids(images)
    zombies = []

    def killed(d, pid):
        for core in _zombies(d):
            core.tc.exit_code = 9
            zombies.append(int(next(n for n, es in d.items() if es[0] is core)[5:-4]))

    _rewrite(images, killed, w.pid)
    with child_subreaper():
        res = torpor_cli("restore", "-D", str(images), "-d")
        try:
            assert res.returncode == 0, res.stderr
            for z in zombies:
                st = procfs.read_stat(z)
                assert st.state == "Z" and st.exit_code == 9, (z, st)
        finally:
            imagecraft.end_descendants(pids)


def test_a_restore_failing_once_threads_run_ends_them(start_workload, tmp_path):
    """A restore failing after a process's threads were started (their processes cannot be
    reaped before them) ends at once with the error, leaving nothing."""
    w, images, _ = _dumped(start_workload, tmp_path, "threads")
    code = (
        "import sys, torpor\n"
        "from torpor.errors import RestoreError\n"
        "from torpor.parts import timers\n"
        "def fail(ctx): raise RestoreError('made to fail')\n"
        "timers.restore = fail\n"
        "try:\n    torpor.restore(sys.argv[1])\n"
        "except RestoreError as e:\n    print(e)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(images)], capture_output=True, text=True, timeout=30
    )
    assert res.stdout.strip() == "made to fail", res.stdout + res.stderr
    assert not harness.pid_alive(w.pid)


def test_images_without_digests_are_restored_with_a_notice(start_workload, tmp_path):
    """An image without digests (as CRIU writes them) restores, saying in one line that
    nothing checks its integrity."""
    w, images, _ = _dumped(start_workload, tmp_path, "counter")
    inv = ImageDir(images).read_one("inventory.img")
    del inv.torpor_digests[:]
    inv.ClearField("torpor_inventory_digest")
    (images / "inventory.img").write_bytes(
        imagecraft.encode_entries("inventory.img", [(inv, None)])
    )
    with child_subreaper():
        res = torpor_cli("restore", "-D", str(images), "-d")
        try:
            assert res.returncode == 0, res.stderr
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and "nothing checks their integrity" in lines[0], lines
            w.adopt(w.pid)
            w.signal()
            assert harness.pid_alive(w.pid)
        finally:
            imagecraft.end_descendants({w.pid})
