"""Tests of torpor.images: round trips of every image kind, crit as an oracle for the on-disk
format, and damaged image directories (every problem must surface as an ImageError naming the
file, never as another exception)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torpor.errors import ImageError
from torpor.images import IMG_VERSION, INVENTORY, KINDS, ImageDir, constants, kind_of, pb
from torpor.images.digest import digest_bytes, digest_file

LEAF_SIZE = 1 << 20  # a size that makes the files below span several chunks

CRIT = "/usr/bin/crit"
REPO = Path(__file__).resolve().parents[1]

PID = 4242
CORE = f"core-{PID}.img"


# --- sample images -----------------------------------------------------------------------------


def _gpregs_compat() -> pb.UserX86RegsEntry:
    regs = {name: 0 for name in pb.UserX86RegsEntry.DESCRIPTOR.fields_by_name if name != "mode"}
    regs.update(
        ax=0xFFFFFDFC,
        orig_ax=162,
        ip=0xF7F1C549,
        sp=0xFFDD1230,
        cs=0x23,
        ss=0x2B,
        ds=0x2B,
        es=0x2B,
        gs=0x63,
        flags=0x246,
        gs_base=0xF7D8A740,
    )
    return pb.UserX86RegsEntry(mode=pb.COMPAT, **regs)


def sample_core() -> pb.CoreEntry:
    """A thread-group leader of an ia32 task, with every sub-message torpor fills."""
    fpregs = pb.UserX86FpregsEntry(
        cwd=0x37F,
        swd=0,
        twd=0,
        fop=0,
        rip=0,
        rdp=0,
        mxcsr=0x1F80,
        mxcsr_mask=0xFFFF,
        st_space=[0] * 32,
        xmm_space=list(range(64)),
        padding=[0] * 24,
        xsave=pb.UserX86XsaveEntry(xstate_bv=7, ymmh_space=[0xDEADBEEF] * 64),
    )
    tls = [
        pb.UserDescT(
            entry_number=12,
            base_addr=0xF7D8A740,
            limit=0xFFFFF,
            seg_32bit=True,
            contents_h=False,
            contents_l=False,
            read_exec_only=False,
            limit_in_pages=True,
            seg_not_present=False,
            usable=True,
        ),
        pb.UserDescT(
            entry_number=13,
            base_addr=0,
            limit=0,
            seg_32bit=False,
            contents_h=False,
            contents_l=False,
            read_exec_only=True,
            limit_in_pages=False,
            seg_not_present=True,
            usable=False,
        ),
    ]
    sigactions = [
        pb.SaEntry(sigaction=0, flags=0, restorer=0, mask=0, compat_sigaction=True)
        for _ in range(64)
    ]
    sigactions[9] = pb.SaEntry(
        sigaction=0x8049A10,
        flags=0x4000000,
        restorer=0xF7F1C560,
        mask=1 << 13,
        compat_sigaction=True,
    )
    itimer = pb.ItimerEntry(isec=0, iusec=0, vsec=0, vusec=0)
    return pb.CoreEntry(
        mtype=pb.CoreEntry.X86_64,
        thread_info=pb.ThreadInfoX86(
            clear_tid_addr=0xF7D8A7A8, gpregs=_gpregs_compat(), fpregs=fpregs, tls=tls
        ),
        tc=pb.TaskCoreEntry(
            task_state=constants.TASK_ALIVE,
            exit_code=0,
            personality=0x8,
            flags=0x400100,
            blk_sigset=0,
            comm="workload-32",
            timers=pb.TaskTimersEntry(real=itimer, virt=itimer, prof=itimer),
            rlimits=pb.TaskRlimitsEntry(
                rlimits=[pb.RlimitEntry(cur=8 << 20, max=2**64 - 1) for _ in range(16)]
            ),
            sigactions=sigactions,
            loginuid=2**32 - 1,
            oom_score_adj=0,
        ),
        ids=pb.TaskKobjIdsEntry(vm_id=1, files_id=2, fs_id=3, sighand_id=4),
        thread_core=pb.ThreadCoreEntry(
            futex_rla=0xF7D8A7B0,
            futex_rla_len=12,
            sched_nice=0,
            sched_policy=0,
            blk_sigset=1 << 9,
            sas=pb.ThreadSasEntry(ss_sp=0, ss_size=0, ss_flags=2),
            creds=pb.CredsEntry(
                uid=0,
                gid=0,
                euid=0,
                egid=0,
                suid=0,
                sgid=0,
                fsuid=0,
                fsgid=0,
                cap_inh=[0, 0],
                cap_prm=[0xFFFFFFFF, 0x1FF],
                cap_eff=[0xFFFFFFFF, 0x1FF],
                cap_bnd=[0xFFFFFFFF, 0x1FF],
                secbits=0,
                groups=[0, 1],
            ),
            comm="workload-32",
            rseq_entry=pb.RseqEntry(
                rseq_abi_pointer=0xF7D8AC20, rseq_abi_size=32, signature=0x53053053
            ),
        ),
    )


def sample_mm() -> pb.MmEntry:
    vmas = [
        pb.VmaEntry(
            start=0x8048000,
            end=0x804A000,
            pgoff=0,
            shmid=5,
            prot=5,
            flags=2,
            status=constants.VMA_AREA_REGULAR | constants.VMA_FILE_PRIVATE,
            fd=-1,
            fdflags=0,
        ),
        pb.VmaEntry(
            start=0x9000000,
            end=0x9021000,
            pgoff=0,
            shmid=0,
            prot=3,
            flags=0x22,
            status=constants.VMA_AREA_REGULAR
            | constants.VMA_ANON_PRIVATE
            | constants.VMA_AREA_HEAP,
            fd=-1,
        ),
        pb.VmaEntry(
            start=0xF7F18000,
            end=0xF7F1C000,
            pgoff=0,
            shmid=0,
            prot=1,
            flags=0x22,
            status=constants.VMA_AREA_REGULAR | constants.VMA_AREA_VVAR,
            fd=-1,
        ),
        pb.VmaEntry(
            start=0xF7F1C000,
            end=0xF7F1E000,
            pgoff=0,
            shmid=0,
            prot=5,
            flags=0x22,
            status=constants.VMA_AREA_REGULAR | constants.VMA_AREA_VDSO,
            fd=-1,
        ),
        pb.VmaEntry(
            start=0xFFDB2000,
            end=0xFFDD3000,
            pgoff=0,
            shmid=0,
            prot=3,
            flags=0x122,
            status=constants.VMA_AREA_REGULAR
            | constants.VMA_ANON_PRIVATE
            | constants.VMA_AREA_STACK,
            fd=-1,
            madv=1 << 14,
        ),
    ]
    return pb.MmEntry(
        mm_start_code=0x8048000,
        mm_end_code=0x8049F00,
        mm_start_data=0x804AF00,
        mm_end_data=0x804B100,
        mm_start_stack=0xFFDD2F40,
        mm_start_brk=0x9000000,
        mm_brk=0x9021000,
        mm_arg_start=0xFFDD3100,
        mm_arg_end=0xFFDD3120,
        mm_env_start=0xFFDD3120,
        mm_env_end=0xFFDD3FE0,
        exe_file_id=5,
        mm_saved_auxv=[33, 0xF7F1C000, 16, 0x178BFBFF, 0, 0],
        vmas=vmas,
        dumpable=1,
    )


def _fown() -> pb.FownEntry:
    return pb.FownEntry(uid=0, euid=0, signum=0, pid_type=0, pid=0)


def _inet_socket(file_id: int) -> pb.InetSkEntry:
    """A UDP socket on 127.0.0.1:5353 connected to [::ffff:127.0.0.1]:53 (IPv6)."""
    entry = pb.InetSkEntry(
        id=file_id,
        ino=621554,
        family=10,
        type=2,
        proto=17,
        state=1,
        src_port=5353,
        dst_port=53,
        flags=0o4000,
        backlog=0,
        src_addr=[0, 0, 0xFFFF0000, 0x0100007F],
        dst_addr=[0, 0, 0xFFFF0000, 0x0100007F],
        fown=_fown(),
        opts=pb.SkOptsEntry(
            so_sndbuf=212992,
            so_rcvbuf=212992,
            so_snd_tmo_sec=0,
            so_snd_tmo_usec=0,
            so_rcv_tmo_sec=0,
            so_rcv_tmo_usec=0,
            reuseaddr=True,
        ),
        v6only=False,
    )
    entry.ip_opts.freebind = True
    entry.ip_opts.torpor_tos = 0x10
    entry.torpor_ipv6_opts.unicast_hops = 7
    entry.torpor_udp_opts.cork = 0
    return entry


def _termios() -> pb.TermiosEntry:
    return pb.TermiosEntry(
        c_iflag=0x500,
        c_oflag=5,
        c_cflag=0xBF,
        c_lflag=0x8A3B,
        c_line=0,
        c_ispeed=15,
        c_ospeed=15,
        c_cc=list(range(19)),
    )


def samples() -> dict[str, list]:
    """One sample file for every registered kind: file name -> entries."""
    return {
        INVENTORY: [
            pb.InventoryEntry(
                img_version=IMG_VERSION,
                fdinfo_per_id=True,
                root_ids=pb.TaskKobjIdsEntry(vm_id=1, files_id=2, fs_id=3, sighand_id=4),
                ns_per_id=True,
                lsmtype=pb.NO_LSM,
                dump_uptime=123456789,
                pre_dump_mode=1,
            )
        ],
        "pstree.img": [
            pb.PstreeEntry(pid=PID, ppid=1, pgid=PID, sid=PID, threads=[PID, PID + 1]),
            pb.PstreeEntry(pid=PID + 7, ppid=PID, pgid=PID, sid=PID, threads=[PID + 7]),
        ],
        CORE: [sample_core()],
        f"mm-{PID}.img": [sample_mm()],
        f"pagemap-{PID}.img": [
            pb.PagemapHead(pages_id=1),
            pb.PagemapEntry(vaddr=0x9000000, nr_pages=33, flags=constants.PE_PRESENT),
            pb.PagemapEntry(vaddr=0xFFDB2000, nr_pages=2, flags=constants.PE_PRESENT),
        ],
        "files.img": [
            pb.FileEntry(
                type=pb.REG,
                id=5,
                reg=pb.RegFileEntry(
                    id=5,
                    flags=0,
                    pos=0,
                    fown=_fown(),
                    name="/opt/workload-32",
                    mnt_id=30,
                    size=15000,
                    mode=0o100755,
                ),
            ),
            pb.FileEntry(
                type=pb.PIPE, id=6, pipe=pb.PipeEntry(id=6, pipe_id=991, flags=0, fown=_fown())
            ),
            pb.FileEntry(
                type=pb.TTY,
                id=7,
                tty=pb.TtyFileEntry(id=7, tty_info_id=8, flags=2, fown=_fown(), regf_id=9),
            ),
            pb.FileEntry(type=pb.INETSK, id=12, isk=_inet_socket(12)),
        ],
        "fdinfo-2.img": [
            pb.FdinfoEntry(id=7, flags=0, type=pb.TTY, fd=0),
            pb.FdinfoEntry(id=6, flags=1, type=pb.PIPE, fd=3),
        ],
        f"fs-{PID}.img": [pb.FsEntry(cwd_id=10, root_id=11, umask=0o22)],
        "tty-info.img": [
            pb.TtyInfoEntry(
                id=8,
                type=pb.PTY,
                locked=False,
                exclusive=False,
                packet_mode=False,
                sid=PID,
                pgrp=PID,
                rdev=0x8803,
                termios=_termios(),
                termios_locked=_termios(),
                winsize=pb.WinsizeEntry(ws_row=50, ws_col=132, ws_xpixel=0, ws_ypixel=0),
                pty=pb.TtyPtyEntry(index=3),
                dev=25,
                uid=0,
                gid=5,
            )
        ],
        "tty-data.img": [pb.TtyDataEntry(tty_id=8, data=b"typed ahead\n")],
        "fifo-data.img": [(pb.PipeDataEntry(pipe_id=77, bytes=4, size=65536), b"fifo")],
        "sk-queues.img": [
            (pb.SkPacketEntry(id_for=12, length=5), b"queue"),
            (pb.SkPacketEntry(id_for=12, length=2, addr=b"\0name"), b"\x00\x01"),
        ],
        "tcp-stream-97b2a.img": [
            (
                pb.TcpStreamEntry(
                    inq_len=3,
                    inq_seq=1000,
                    outq_len=2,
                    outq_seq=5000,
                    opt_mask=7,
                    snd_wscale=7,
                    mss_clamp=65483,
                    rcv_wscale=7,
                    timestamp=123456,
                    unsq_len=1,
                ),
                b"in" + b"!" + b"ou",
            )
        ],
        "pipes-data.img": [
            (pb.PipeDataEntry(pipe_id=991, bytes=11, size=65536), b"hello pipe\n"),
            (pb.PipeDataEntry(pipe_id=992, bytes=3, size=4096), b"\x00\xff\x01"),
        ],
        f"sigacts-{PID}.img": [
            pb.SaEntry(sigaction=1, flags=0, restorer=0, mask=0) for _ in range(64)
        ],
        "remap-fpath.img": [pb.RemapFilePathEntry(orig_id=5, remap_id=1, remap_type=pb.GHOST)],
        "ghost-file-1.img": [
            (
                pb.GhostFileEntry(
                    uid=0,
                    gid=0,
                    mode=0o100600,
                    dev=2049,
                    ino=77,
                    size=6,
                    atim=pb.Timeval(tv_sec=1, tv_usec=2),
                    mtim=pb.Timeval(tv_sec=3, tv_usec=4),
                ),
                b"ghost\n",
            )
        ],
        "file-locks.img": [
            pb.FileLockEntry(flag=1, type=1, pid=PID, fd=3, start=0, len=10),
            pb.FileLockEntry(flag=2, type=0, pid=PID + 7, fd=5, start=0, len=0),
        ],
        "timens-1.img": [
            pb.TimensEntry(
                monotonic=pb.Timespec(tv_sec=4602, tv_nsec=411308122),
                boottime=pb.Timespec(tv_sec=4602, tv_nsec=411309000),
            )
        ],
        "seccomp.img": [
            pb.SeccompEntry(
                seccomp_filters=[
                    pb.SeccompFilter(filter=bytes.fromhex("0600000000ff7f00"), flags=4),
                    pb.SeccompFilter(filter=bytes.fromhex("0600000005000500"), prev=0, flags=6),
                ]
            )
        ],
        "cgroup.img": [
            pb.CgroupEntry(
                sets=[
                    pb.CgSetEntry(
                        id=1,
                        ctls=[
                            pb.CgMemberEntry(name="", path="/app/work"),
                            pb.CgMemberEntry(name="name=systemd", path="/"),
                        ],
                    )
                ],
                controllers=[
                    pb.CgControllerEntry(
                        cnames=[""],
                        dirs=[
                            pb.CgroupDirEntry(
                                dir_name="/app",
                                properties=[pb.CgroupPropEntry(name="pids.max", value="64")],
                                children=[
                                    pb.CgroupDirEntry(
                                        dir_name="/app/work",
                                        dir_perms=pb.CgroupPerms(mode=0o755, uid=0, gid=0),
                                    )
                                ],
                            )
                        ],
                    )
                ],
            )
        ],
        "cpuinfo.img": [
            pb.CpuinfoEntry(
                x86_entry=[
                    pb.CpuinfoX86Entry(
                        vendor_id=pb.CpuinfoX86Entry.AMD,
                        cpu_family=25,
                        model=1,
                        stepping=1,
                        capability_ver=2,
                        capability=[0x178BFBFF] + [0] * 19,
                    )
                ]
            )
        ],
    }


def message_of(item):
    return item[0] if isinstance(item, tuple) else item


@pytest.fixture
def imgdir(tmp_path) -> ImageDir:
    return ImageDir(tmp_path)


def write_dump(path: Path, pages: bytes = b"") -> dict[str, list]:
    """Write every sample plus pages-1.img into ``path`` and commit, like a dump does."""
    d = ImageDir(path)
    written = samples()
    inventory = written.pop(INVENTORY)[0]
    for name, entries in written.items():
        d.write(name, entries)
    with d.pages_writer(1) as w:
        w.write(pages or bytes(range(256)) * 16 * 35)
    d.commit(inventory)
    return written


# --- schema and registry -----------------------------------------------------------------------


def test_every_kind_has_a_sample():
    assert {kind_of(name).prefix for name in samples()} == set(KINDS)


def test_generated_modules_are_a_package():
    """protoc's imports point into torpor.images.pb and the descriptors have unique names."""
    from torpor.images.pb import core_pb2, core_x86_pb2

    assert core_pb2.DESCRIPTOR.name == "torpor/images/pb/core.proto"
    deps = {f.name for f in core_pb2.DESCRIPTOR.dependencies}
    assert core_x86_pb2.DESCRIPTOR.name in deps
    assert pb.CoreEntry is core_pb2.CoreEntry
    assert pb.mm_pb2.MmEntry is pb.MmEntry


def test_field_numbers_match_criu():
    """Spot checks of the wire facts most easily broken by editing the schema."""
    regs = pb.UserX86RegsEntry.DESCRIPTOR.fields_by_name
    assert regs["mode"].number == 28 and regs["gs"].number == 27 and regs["ax"].number == 11
    assert pb.UserX86RegsMode.Value("NATIVE") == 1 and pb.UserX86RegsMode.Value("COMPAT") == 2
    assert pb.TaskCoreEntry.DESCRIPTOR.fields_by_name["sigactions"].number == 15
    assert pb.ThreadCoreEntry.DESCRIPTOR.fields_by_name["rseq_entry"].number == 15
    assert pb.UserX86FpregsEntry.DESCRIPTOR.fields_by_name["xsave"].number == 13
    assert pb.MmEntry.DESCRIPTOR.fields_by_name["vmas"].number == 14
    assert pb.FileEntry.DESCRIPTOR.fields_by_name["tty"].number == 19
    assert pb.FdTypes.Value("CTL_TTY") == 65534
    assert pb.FileEntry.DESCRIPTOR.fields_by_name["isk"].number == 4
    assert pb.InetSkEntry.DESCRIPTOR.fields_by_name["ip_opts"].number == 16
    assert pb.TcpStreamEntry.DESCRIPTOR.fields_by_name["rcv_wup"].number == 17
    assert pb.InventoryEntry.DESCRIPTOR.fields_by_name["torpor_digests"].number == 1000


def test_kind_of():
    assert kind_of("core-1.img").prefix == "core"
    assert kind_of("tty-info.img").prefix == "tty-info"
    assert kind_of("pipes-data.img").prefix == "pipes-data"
    assert kind_of(INVENTORY).magics == (constants.INVENTORY_MAGIC,)
    assert kind_of("mm-9.img").magics == (constants.IMG_COMMON_MAGIC, constants.MM_MAGIC)
    for bad in ("pages-1.img", "core-1", "unknown.img", "../core-1.img", ""):
        with pytest.raises(ValueError):
            kind_of(bad)


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(samples()))
def test_round_trip(imgdir, name):
    entries = samples()[name]
    imgdir.write(name, entries)
    assert imgdir.has(name)
    assert not imgdir.has(name + ".tmp")
    assert imgdir.read(name) == [message_of(e) for e in entries]
    if kind_of(name).payload_field:
        assert imgdir.read_with_payloads(name) == entries
    if len(entries) == 1:
        assert imgdir.read_one(name) == message_of(entries[0])
    # a second directory object knows no digests: the structure alone is checked
    assert ImageDir(imgdir.path).read(name) == [message_of(e) for e in entries]


def test_image_bytes_layout(imgdir):
    """Two magics, then u32le length + message, as CRIU lays it out."""
    entry = pb.FsEntry(cwd_id=1, root_id=2, umask=0o22)
    imgdir.write("fs-1.img", [entry])
    data = (imgdir.path / "fs-1.img").read_bytes()
    body = entry.SerializeToString()
    assert data[:4] == constants.IMG_COMMON_MAGIC.to_bytes(4, "little")
    assert data[4:8] == constants.FS_MAGIC.to_bytes(4, "little")
    assert data[8:12] == len(body).to_bytes(4, "little")
    assert data[12:] == body


def test_commit_and_verify(tmp_path):
    written = write_dump(tmp_path)
    d = ImageDir(tmp_path)
    inv = d.verify()
    assert inv.img_version == IMG_VERSION
    listed = {t.name: t for t in inv.torpor_digests}
    assert set(listed) == set(written) | {"pages-1.img"}
    for name, t in listed.items():
        assert digest_file(tmp_path / name) == (t.size, t.digest)
    for name, entries in written.items():
        assert d.read(name) == [message_of(e) for e in entries]
    assert not list(tmp_path.glob("*.tmp"))


def test_commit_fills_img_version_and_lists_only_own_files(tmp_path):
    (tmp_path / "stray.img").write_bytes(b"x")
    d = ImageDir(tmp_path)
    d.write("fs-1.img", [pb.FsEntry(cwd_id=1, root_id=2)])
    d.commit(pb.InventoryEntry())
    inv = ImageDir(tmp_path).verify()
    assert inv.img_version == IMG_VERSION
    assert [t.name for t in inv.torpor_digests] == ["fs-1.img"]


def test_pages_writer(imgdir):
    data = os.urandom(3 * LEAF_SIZE + 1234)
    buf = bytearray(data[: LEAF_SIZE + 5])
    with imgdir.pages_writer(7) as w:
        assert not imgdir.pages_path(7).exists()
        w.write(buf)
        buf.extend(b"resizable again")  # no view of the caller's buffer may survive write()
        w.writev([data[LEAF_SIZE + 5 : 2 * LEAF_SIZE], memoryview(data)[2 * LEAF_SIZE :]])
        assert w.tell() == len(data)
    assert imgdir.pages_path(7).read_bytes() == data
    imgdir.commit(pb.InventoryEntry())
    inv = ImageDir(imgdir.path).verify()
    (entry,) = [t for t in inv.torpor_digests if t.name == "pages-7.img"]
    assert (entry.size, entry.digest) == (len(data), digest_bytes(data))


def test_pages_writer_fileno_writes_are_digested(imgdir):
    with imgdir.pages_writer(2) as w:
        w.write(b"a" * 5000)
        os.writev(w.fileno(), [b"b" * 3000, b"c" * LEAF_SIZE])
    imgdir.commit(pb.InventoryEntry())
    ImageDir(imgdir.path).verify()


def test_pages_writer_aborts_on_exception(imgdir):
    with pytest.raises(RuntimeError), imgdir.pages_writer(3) as w:
        w.write(b"partial")
        raise RuntimeError("collector failed")
    assert not imgdir.pages_path(3).exists()
    assert not list(imgdir.path.iterdir())
    imgdir.commit(pb.InventoryEntry())
    assert not ImageDir(imgdir.path).verify().torpor_digests


def test_digest_is_independent_of_write_sizes(imgdir):
    data = os.urandom(5 * LEAF_SIZE + 77)
    with imgdir.pages_writer(1) as w:
        for i in range(0, len(data), 300_000):
            w.write(data[i : i + 300_000])
    with imgdir.pages_writer(2) as w:
        w.write(data)
    assert digest_file(imgdir.pages_path(1)) == digest_file(imgdir.pages_path(2))
    assert digest_file(imgdir.pages_path(1)) == (len(data), digest_bytes(data))


def test_write_refuses_bad_entries(imgdir):
    with pytest.raises(ImageError, match=r"^core-1\.img: .*lacks .*gpregs"):
        imgdir.write("core-1.img", [pb.CoreEntry(mtype=1, thread_info=pb.ThreadInfoX86())])
    with pytest.raises(TypeError):
        imgdir.write("core-1.img", [pb.MmEntry()])
    with pytest.raises(TypeError):
        imgdir.write("pagemap-1.img", [pb.PagemapEntry(vaddr=0, nr_pages=1)])
    with pytest.raises(ValueError):
        imgdir.write("pipes-data.img", [(pb.PipeDataEntry(pipe_id=1, bytes=5), b"abc")])
    with pytest.raises(ValueError):
        imgdir.write("pages-1.img", [])
    assert not list(imgdir.path.iterdir())


# --- crit as the oracle ------------------------------------------------------------------------


def crit_decode(path: Path, pretty: bool = False) -> dict:
    if not os.path.exists(CRIT):
        pytest.fail(
            f"{CRIT} not found: install Debian's criu package (apt-get install criu); "
            "crit is the reference decoder these tests check the image format against"
        )
    cmd = [CRIT, "decode", "-i", str(path)] + (["--pretty"] if pretty else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"crit decode {path.name} failed: {proc.stderr or proc.stdout}"
    return json.loads(proc.stdout)


def test_missing_crit_fails_with_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CRIT", str(tmp_path / "no-crit"))
    with pytest.raises(pytest.fail.Exception, match="install Debian's criu package"):
        crit_decode(tmp_path / "x.img")


@pytest.mark.parametrize("name", list(samples()))
def test_crit_decodes_every_kind(imgdir, name):
    entries = samples()[name]
    imgdir.write(name, entries)
    image = crit_decode(imgdir.path / name)
    assert image["magic"] == kind_of(name).magic_name
    assert len(image["entries"]) == len(entries)


def test_crit_core_values(imgdir):
    imgdir.write(CORE, [sample_core()])
    (core,) = crit_decode(imgdir.path / CORE)["entries"]
    assert core["mtype"] == "X86_64"
    regs = core["thread_info"]["gpregs"]
    assert regs["mode"] == "COMPAT"
    assert regs["ip"] == 0xF7F1C549 and regs["cs"] == 0x23 and regs["orig_ax"] == 162
    assert core["thread_info"]["fpregs"]["xsave"]["ymmh_space"][0] == 0xDEADBEEF
    assert core["thread_info"]["tls"][0]["base_addr"] == 0xF7D8A740
    assert core["tc"]["comm"] == "workload-32"
    assert core["tc"]["sigactions"][9]["sigaction"] == 0x8049A10
    assert core["tc"]["sigactions"][9]["compat_sigaction"] is True
    assert core["tc"]["rlimits"]["rlimits"][0]["cur"] == 8 << 20
    tcore = core["thread_core"]
    assert tcore["futex_rla"] == 0xF7D8A7B0 and tcore["futex_rla_len"] == 12
    assert tcore["rseq_entry"]["signature"] == 0x53053053
    assert tcore["creds"]["cap_eff"] == [0xFFFFFFFF, 0x1FF]
    assert tcore["sas"]["ss_flags"] == 2
    assert core["ids"]["sighand_id"] == 4


def test_crit_native_mode_and_values(imgdir):
    core = sample_core()
    core.thread_info.gpregs.mode = pb.NATIVE
    core.thread_info.gpregs.r15 = 0x1122334455667788
    imgdir.write(CORE, [core])
    (decoded,) = crit_decode(imgdir.path / CORE)["entries"]
    assert decoded["thread_info"]["gpregs"]["mode"] == "NATIVE"
    assert decoded["thread_info"]["gpregs"]["r15"] == 0x1122334455667788


def test_crit_mm_pagemap_pstree_values(tmp_path):
    write_dump(tmp_path)
    (mm,) = crit_decode(tmp_path / f"mm-{PID}.img")["entries"]
    assert mm["vmas"][0]["start"] == 0x8048000 and mm["vmas"][-1]["end"] == 0xFFDD3000
    assert mm["mm_saved_auxv"][1] == 0xF7F1C000
    (pretty_mm,) = crit_decode(tmp_path / f"mm-{PID}.img", pretty=True)["entries"]
    assert "VMA_AREA_VDSO" in pretty_mm["vmas"][3]["status"]
    assert "VMA_AREA_VVAR" in pretty_mm["vmas"][2]["status"]
    assert "VMA_AREA_STACK" in pretty_mm["vmas"][4]["status"]
    pagemap = crit_decode(tmp_path / f"pagemap-{PID}.img", pretty=True)["entries"]
    assert pagemap[0] == {"pages_id": 1}
    assert pagemap[1]["nr_pages"] == 33 and pagemap[1]["flags"] == "PE_PRESENT"
    tree = crit_decode(tmp_path / "pstree.img")["entries"]
    assert tree[0]["pid"] == PID and tree[0]["threads"] == [PID, PID + 1]


def test_crit_files_and_pipes(tmp_path):
    write_dump(tmp_path)
    files = crit_decode(tmp_path / "files.img")["entries"]
    assert [f["type"] for f in files] == ["REG", "PIPE", "TTY", "INETSK"]
    assert files[3]["isk"]["src_port"] == 5353 and files[3]["isk"]["proto"] == 17
    stream = crit_decode(tmp_path / "tcp-stream-97b2a.img")["entries"][0]
    assert stream["inq_seq"] == 1000 and base64.b64decode(stream["extra"]["outq"]) == b"ou"
    assert files[0]["reg"]["name"] == "/opt/workload-32"
    assert files[1]["pipe"]["pipe_id"] == 991
    fdinfo = crit_decode(tmp_path / "fdinfo-2.img")["entries"]
    assert fdinfo[1] == {"id": 6, "flags": 1, "type": "PIPE", "fd": 3}
    tty = crit_decode(tmp_path / "tty-info.img")["entries"][0]
    assert tty["type"] == "PTY" and tty["winsize"]["ws_col"] == 132
    assert tty["termios"]["c_cc"] == list(range(19))
    pipes = crit_decode(tmp_path / "pipes-data.img")["entries"]
    assert pipes[0]["pipe_id"] == 991 and pipes[1]["bytes"] == 3
    assert base64.b64decode(pipes[0]["extra"]) == b"hello pipe\n"
    assert base64.b64decode(pipes[1]["extra"]) == b"\x00\xff\x01"


def test_crit_inventory_with_digests(tmp_path):
    write_dump(tmp_path)
    assert ImageDir(tmp_path).verify().torpor_digests
    (inv,) = crit_decode(tmp_path / INVENTORY)["entries"]
    assert inv["img_version"] == IMG_VERSION
    assert inv["root_ids"]["sighand_id"] == 4
    assert inv["lsmtype"] == "NO_LSM"
    assert inv["dump_uptime"] == 123456789


# --- damaged images ----------------------------------------------------------------------------


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def expect_image_error(fn, pattern: str) -> str:
    with pytest.raises(ImageError, match=pattern) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_inventory(tmp_path):
    write_dump(tmp_path)
    (tmp_path / INVENTORY).unlink()
    expect_image_error(
        ImageDir(tmp_path).verify,
        r"^inventory\.img: missing \(dump incomplete or not an image directory\)$",
    )


def test_not_a_directory(tmp_path):
    with pytest.raises(ImageError, match="no such image directory"):
        ImageDir(tmp_path / "nope")


def test_missing_file(tmp_path):
    write_dump(tmp_path)
    (tmp_path / CORE).unlink()
    expect_image_error(ImageDir(tmp_path).verify, rf"^{CORE}: missing$")
    expect_image_error(lambda: ImageDir(tmp_path).read(CORE), rf"^{CORE}: missing$")


def test_truncated_file(tmp_path):
    write_dump(tmp_path)
    path = tmp_path / CORE
    path.write_bytes(path.read_bytes()[:-10])
    expect_image_error(ImageDir(tmp_path).verify, rf"^{CORE}: size .*truncated")
    expect_image_error(lambda: ImageDir(tmp_path).read(CORE), rf"^{CORE}: .*truncated")


@pytest.mark.parametrize("offset", [0, 4])
def test_flipped_magic(tmp_path, offset):
    write_dump(tmp_path)
    flip(tmp_path / f"mm-{PID}.img", offset)
    expect_image_error(ImageDir(tmp_path).verify, rf"^mm-{PID}\.img: digest mismatch")
    expect_image_error(
        lambda: ImageDir(tmp_path).read(f"mm-{PID}.img"), rf"^mm-{PID}\.img: bad .*magic"
    )


def test_flipped_inventory_magic(tmp_path):
    write_dump(tmp_path)
    flip(tmp_path / INVENTORY, 1)
    expect_image_error(ImageDir(tmp_path).verify, r"^inventory\.img: bad image magic")


def test_flipped_byte_in_entry(tmp_path):
    write_dump(tmp_path)
    size = (tmp_path / CORE).stat().st_size
    flip(tmp_path / CORE, size // 2, 0x01)
    d = ImageDir(tmp_path)
    expect_image_error(d.verify, rf"^{CORE}: digest mismatch \(damaged image\)$")


def test_read_after_verify_checks_digest(tmp_path):
    write_dump(tmp_path)
    d = ImageDir(tmp_path)
    d.verify()
    flip(tmp_path / CORE, 40, 0x01)
    expect_image_error(lambda: d.read(CORE), rf"^{CORE}: digest mismatch")


def test_flipped_byte_in_pages(tmp_path):
    write_dump(tmp_path, pages=os.urandom(3 * LEAF_SIZE))
    flip(tmp_path / "pages-1.img", 2 * LEAF_SIZE + 5, 0x10)
    expect_image_error(
        ImageDir(tmp_path).verify, r"^pages-1\.img: digest mismatch \(damaged image\)$"
    )


def test_damaged_inventory(tmp_path):
    write_dump(tmp_path)
    data = (tmp_path / INVENTORY).read_bytes()
    (tmp_path / INVENTORY).write_bytes(data[:4] + b"\xff\xff\x00\x00" + data[8:])
    expect_image_error(ImageDir(tmp_path).verify, r"^inventory\.img: ")


def test_wrong_image_version(tmp_path):
    d = ImageDir(tmp_path)
    d.commit(pb.InventoryEntry(img_version=1))
    expect_image_error(ImageDir(tmp_path).verify, r"^inventory\.img: image version 1")


def test_read_one_needs_exactly_one(imgdir):
    imgdir.write("pstree.img", samples()["pstree.img"])
    expect_image_error(lambda: imgdir.read_one("pstree.img"), r"^pstree\.img: expected exactly one")
    imgdir.write("fs-1.img", [])
    expect_image_error(lambda: imgdir.read_one("fs-1.img"), r"^fs-1\.img: expected exactly one")


@pytest.mark.parametrize(
    "where",
    ["torpor_audit.values.value", "torpor_audit.values.key", "thread_core.comm", "tc.comm"],
)
def test_a_string_holding_nul_is_refused(imgdir, where):
    """A NUL in a string is found at any depth, among repeated key/value pairs too (the
    read skips only message types that hold no string at all)."""
    core = message_of(samples()[CORE][0])
    for i in range(3):
        core.torpor_audit.values.add(key=f"status.K{i}", value=f"v{i}")
    data = core.SerializeToString()
    clean = pb.CoreEntry.FromString(data)
    imgdir.write(CORE, [clean])
    assert imgdir.read_one(CORE) == clean
    crafted = pb.CoreEntry.FromString(data)
    *path, leaf = where.split(".")
    target = crafted
    for name in path:
        target = getattr(target, name)
    if where.startswith("torpor_audit"):
        target = target[1]
    setattr(target, leaf, "a\0b")
    (imgdir.path / CORE).unlink()
    imgdir.write(CORE, [crafted])
    expect_image_error(lambda: imgdir.read_one(CORE), rf"field {where} is not a UTF-8 string")


def test_every_single_byte_damage_is_an_image_error(tmp_path):
    """Flip each byte of each image (no digests known): parse or ImageError, nothing else."""
    d = ImageDir(tmp_path)
    for name, entries in samples().items():
        d.write(name, entries)
    reader = ImageDir(tmp_path)
    for name in samples():
        path = tmp_path / name
        good = path.read_bytes()
        for offset in range(len(good)):
            for mask in (0x01, 0x80):
                damaged = bytearray(good)
                damaged[offset] ^= mask
                path.write_bytes(bytes(damaged))
                try:
                    reader.read(name)
                except ImageError as exc:
                    assert str(exc).startswith(f"{name}: ")
        for cut in range(len(good)):
            path.write_bytes(good[:cut])
            try:
                reader.read(name)
            except ImageError as exc:
                assert str(exc).startswith(f"{name}: ")
        path.write_bytes(good)


# --- the generator -----------------------------------------------------------------------------


def test_generated_code_is_up_to_date(tmp_path):
    """scripts/gen-protos.sh, run on a copy of the sources, reproduces the committed modules."""
    import grpc_tools  # noqa: F401 - installed with the test extras; a missing one fails here

    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "gen-protos.sh", copy / "scripts")
    shutil.copytree(REPO / "torpor" / "images" / "proto", copy / "torpor" / "images" / "proto")
    (copy / "torpor" / "images" / "pb").mkdir()
    subprocess.run(
        ["sh", str(copy / "scripts" / "gen-protos.sh"), sys.executable],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.name for p in (copy / "torpor" / "images" / "pb").iterdir())
    committed = sorted(
        p.name for p in (REPO / "torpor" / "images" / "pb").iterdir() if p.suffix in (".py", ".pyi")
    )
    assert generated == committed
    for name in generated:
        assert (copy / "torpor/images/pb" / name).read_text() == (
            REPO / "torpor/images/pb" / name
        ).read_text(), f"{name} differs: run scripts/gen-protos.sh"
