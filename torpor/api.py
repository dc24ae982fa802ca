"""The Python API: dump(), restore() and check(); the command line only wraps these."""

from torpor import dumper
from torpor.parts import fds
from torpor.restorer import restore


def dump(
    pid: int,
    images_dir,
    *,
    leave_running: bool = False,
    tcp_established: bool = False,
    **options,
) -> None:
    """torpor.dumper.dump (its `options`: shell_job, ghost_limit, progress), with the options
    that kinds of fd take: `tcp_established` saves TCP connections (in tcp-stream images,
    through TCP_REPAIR) instead of refusing them; closing the dumped ones then sends nothing
    to their peers, unless `leave_running`."""
    with fds.dump_session({"tcp_established": tcp_established}, leave_running):
        dumper.dump(pid, images_dir, leave_running=leave_running, **options)


def check(images_dir=None, **options):
    """Without `images_dir`: what this kernel offers torpor, as (feature, available,
    explanation) per feature. With it: whether this host can restore those images, as a
    list of torpor.preflight.Finding; `options` are restore's strict_cpu_check, timens and
    pidns."""
    if images_dir is not None:
        from torpor.restorer import check as check_images

        return check_images(images_dir, **options)
    from torpor.checks import run_checks

    return run_checks()


__all__ = ["check", "dump", "restore"]
