"""The Python API: dump(), restore() and check(); the command line only wraps these.

Each function loads its side of torpor when first called: a `torpor dump` command never
imports the restorer (its preflight, the vDSO and task creation), nor a `torpor restore` the
dumper, and each command's start-up pays only for what it runs.
"""


def dump(pid: int, images_dir, **options) -> None:
    """Checkpoint process `pid` and all its descendants into `images_dir`; `options` and
    what happens to the tree are those of :func:`torpor.dumper.dump`."""
    from torpor.dumper import dump as dump_tree  # only when dumping: command start-up

    return dump_tree(pid, images_dir, **options)


def restore(images_dir, **options) -> int:
    """Recreate the process tree saved in `images_dir` and return its root's PID; `options`
    are those of :func:`torpor.restorer.restore`."""
    from torpor.restorer import restore as restore_tree  # only when restoring: start-up

    return restore_tree(images_dir, **options)


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
