"""The Python API: dump(), restore() and check(); the command line only wraps these."""

from torpor.dumper import dump
from torpor.restorer import restore


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
